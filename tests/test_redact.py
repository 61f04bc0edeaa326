"""The redactor's shortcut for JSON text: `clean(text)` may only say "no secret" when masking the
value the text encodes changes nothing."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from connector.redact import MASK, Redactor

SECRETS = ["s3cr3t-key", 'pa"ss\\word', "nøkkel-ÆØÅ", "\u2028line-sep", "12345678", "emoji-\U0001f511-key"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@given(value=json_values, secret=st.sampled_from(SECRETS), where=st.integers(min_value=0, max_value=3))
def test_clean_text_means_masking_changes_nothing(value, secret, where):
    redactor = Redactor([secret])
    planted = [value, f"before {secret} after", {f"k{secret}": 1}, [1, {"x": secret}]][where] if where else value
    for ensure_ascii in (True, False):
        text = json.dumps(planted, ensure_ascii=ensure_ascii)
        if redactor.clean(text):
            assert redactor.data(planted) == planted
        if where:
            assert not redactor.clean(text), f"{secret!r} planted, yet the text was called clean"


def test_a_payload_without_secrets_is_clean_and_one_with_the_key_is_not():
    redactor = Redactor(["the-app-key-123"])
    assert redactor.clean(json.dumps({"title": "Interview", "participants": [{"email": "a@example.com"}]}))
    body = {"title": "Interview", "description": "key: the-app-key-123"}
    assert not redactor.clean(json.dumps(body))
    assert redactor.data(body)["description"] == f"key: {MASK}"
    assert Redactor().clean(json.dumps(body)), "no secrets: every text is clean"
