"""The compliance officer's audit report: one self-contained HTML file.

``gather`` reads and verifies ledgers against the trust bundle (I/O);
``model`` turns decoded entries into the figures a supervisor asks for
(pure); ``charts`` draws them with matplotlib into PNG data URIs; ``html``
renders the page (inline CSS and script, no network needed to open it).
"""
