"""Subject filter matching helpers and the subject index's wildcard lookups."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.jetstream.store.index import SubjectIndex
from edgebus.jetstream.store.subjects import compile_filter, has_wildcard, is_all, literal_prefix, subject_matches


def test_subject_matches_table():
    cases = [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.*.c", True),
        ("a.b.c", "a.>", True),
        ("a", "a.>", False),
        ("a.b", "*", False),
        ("a", "*", True),
        ("a.b.c", "*.*.*", True),
        ("a.b.c", "*.*", False),
        ("a.b.c", ">", True),
        ("a.b", "a.b.>", False),
        ("a*b.c", "a*b.*", True),  # `a*b` is a literal token
        ("ab.c", "a*b.*", False),
        ("x.y", "", True),
        ("a.b.c", "a.b", False),
    ]
    for subject, filt, want in cases:
        assert subject_matches(subject, filt) is want, (subject, filt)
        assert bool(compile_filter(filt)(subject)) is want, (subject, filt)


def test_helpers():
    assert is_all(">") and is_all("") and is_all(None) and not is_all("a.>")
    assert has_wildcard("a.*") and has_wildcard(">") and not has_wildcard("a*.b>")
    assert literal_prefix("a.b.*.c") == "a.b."
    assert literal_prefix("*.b") == ""
    assert literal_prefix("$KV.bucket.>") == "$KV.bucket."


tokens = st.sampled_from(["a", "b", "c", "ab"])
subjects = st.lists(tokens, min_size=1, max_size=4).map(".".join)
filters = st.lists(st.sampled_from(["a", "b", "c", "ab", "*"]), min_size=1, max_size=4).flatmap(
    lambda ts: st.sampled_from([".".join(ts), ".".join(ts + [">"])])
)


@settings(max_examples=300)
@given(subjects, filters)
def test_compiled_equals_reference(subject, filt):
    assert bool(compile_filter(filt)(subject)) == subject_matches(subject, filt)


@settings(max_examples=100)
@given(st.sets(subjects, max_size=25), filters)
def test_index_match_equals_scan(names, filt):
    idx = SubjectIndex()
    for i, n in enumerate(sorted(names)):
        idx.add(n, None, i + 1)
    got = sorted(i.name for i in idx.match(filt))
    assert got == sorted(n for n in names if subject_matches(n, filt))
    assert idx.candidates(filt) >= len(got)
    assert idx.covers_all(filt) <= (len(got) == len(names))
