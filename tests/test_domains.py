"""Domain-separation tags are unique, versioned ASCII."""

from gateway import domains


def test_every_domain_tag_is_unique_ascii_and_versioned() -> None:
    tags = domains.ALL_TAGS
    assert len(set(tags)) == len(tags)
    for t in tags:
        assert t.isascii() and ".v1." in t
    declared = {v for k, v in vars(domains).items() if k.isupper() and isinstance(v, str)}
    assert declared == set(tags), "a tag is missing from ALL_TAGS"
