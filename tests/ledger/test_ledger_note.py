"""C2SP signed notes, checkpoints and cosignatures, checked against golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import base64

import pytest

from gateway.crypto import SigningKey
from gateway.errors import InvalidArgument, VerificationFailed
from gateway.ledger.note import (
    SIG_COSIGNATURE_V1,
    Checkpoint,
    NoteVerifier,
    cosign,
    cosignatures_in,
    open_checkpoint,
    open_note,
    parse_note,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
    vkey,
)

# Known-answer vectors from golang.org/x/mod/sumdb/note/note_test.go (BSD-3-Clause).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLo"
    "x33WWd1RvMc+QQ=\n"
)


def go_signer() -> SigningKey:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[-1])
    assert raw[0] == 1
    return SigningKey(raw[1:])


def test_sign_matches_go_sumdb_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, "PeterNeumann", go_signer()) == GO_TEXT + "\n" + PETER_SIG


def test_vkey_string_matches_go() -> None:
    assert vkey("PeterNeumann", go_signer().verify_key) == GO_VKEY
    assert parse_vkey(GO_VKEY).key == go_signer().verify_key


def test_open_go_note_with_known_and_unknown_signers() -> None:
    msg = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    text, ok = open_note(msg, [parse_vkey(GO_VKEY)])
    assert text == GO_TEXT and [v.name for v in ok] == ["PeterNeumann"]
    _, ok = open_note(msg, [parse_vkey(GO_VKEY), parse_vkey(ENOCH_VKEY)])
    assert {v.name for v in ok} == {"PeterNeumann", "EnochRoot"}


@pytest.mark.parametrize(
    "msg",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT
        + "\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX\n",
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_rejected_like_go(msg: str) -> None:
    with pytest.raises(VerificationFailed):
        open_note(msg, [parse_vkey(GO_VKEY)])


def test_bad_signature_from_known_key_rejects_whole_note() -> None:
    bad = GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationFailed, match="invalid signature"):
        open_note(bad, [parse_vkey(GO_VKEY)])


def test_note_without_trusted_signature_is_rejected() -> None:
    with pytest.raises(VerificationFailed, match="no verifiable"):
        open_note(GO_TEXT + "\n" + ENOCH_SIG, [parse_vkey(GO_VKEY)])


@pytest.mark.parametrize("mangle", [lambda s: s[:-1] + "X", lambda s: "X" + s, lambda s: s + "+"])
def test_mangled_vkeys_are_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument):
        parse_vkey(mangle(GO_VKEY))


def test_checkpoint_round_trip_opens_with_log_key() -> None:
    k = go_signer()
    cp = Checkpoint("example.com/log", 20852163, bytes(range(32)))
    note = sign_checkpoint(cp, k)
    assert note.startswith("example.com/log\n20852163\n")
    assert open_checkpoint(note, "example.com/log", k.verify_key) == cp
    with pytest.raises(VerificationFailed):
        open_checkpoint(note, "other.example/log", k.verify_key)


@pytest.mark.parametrize(
    "body",
    [
        "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # leading zero
        "o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n1\nAAAA\n",  # short root
        "o\n1\n",  # missing root
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # no final newline
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body: str) -> None:
    with pytest.raises(VerificationFailed):
        Checkpoint.parse(body)


def test_cosignature_round_trip_and_tamper() -> None:
    wk = SigningKey(bytes([7]) * 32)
    body = Checkpoint("example.com/log", 5, bytes(32)).body()
    sig = cosign(body, "witness.example/w1", wk, 1679315147)
    w = NoteVerifier("witness.example/w1", wk.verify_key, SIG_COSIGNATURE_V1)
    assert verify_cosignature(body, sig, w) == 1679315147
    other = Checkpoint("example.com/log", 6, bytes(32)).body()
    with pytest.raises(VerificationFailed):
        verify_cosignature(other, sig, w)
    note = sign_checkpoint(Checkpoint("example.com/log", 5, bytes(32)), go_signer()) + sig.line()
    assert cosignatures_in(note, {"witness.example/w1": wk.verify_key}) == {
        "witness.example/w1": 1679315147
    }
    # A standard verifier configured with only the log key still opens the cosigned note.
    text, _ = open_note(note, [NoteVerifier("example.com/log", go_signer().verify_key)])
    assert text == body
    assert len(parse_note(note)[1]) == 2
