"""Secret masking and log rendering: pure functions, no database."""

from __future__ import annotations

import base64
import json

import pytest

from minijenkin.errors import InvalidInputError
from minijenkin.logs.lines import SPLIT_MARKER, LineSplitter
from minijenkin.logs.masking import SecretMasker, validate_secret_value
from minijenkin.logs.render import HtmlRenderer, for_terminal, plain_text


def test_masker_replaces_every_occurrence() -> None:
    masker = SecretMasker(["hunter22"])

    assert masker.mask("pw=hunter22 again hunter22") == "pw=*** again ***"
    assert masker.mask("nothing here") == "nothing here"


def test_masker_masks_each_line_of_multiline_secret() -> None:
    masker = SecretMasker(["-----BEGIN KEY-----\r\nabcdEFGH1234\n-----END KEY-----\n"])

    assert masker.mask("-----BEGIN KEY-----") == "***"
    assert masker.mask("  abcdEFGH1234") == "  ***"
    assert masker.mask("-----END KEY-----") == "***"


@pytest.mark.parametrize("secret", ["tok-5566\n", "tok-5566\r\n", "  tok-5566  "])
def test_masker_masks_value_without_line_break(secret: str) -> None:
    # A step's output is split at line breaks before masking, so the
    # printed line never contains the value's trailing newline or CR.
    masker = SecretMasker([secret])

    assert masker.mask("token=tok-5566") == "token=***"


def test_masker_masks_json_string_values() -> None:
    secret = json.dumps({"user": "svc-deployer", "key": "line-one\nline-two", "port": 5432,
                         "nested": [{"token": "tok-9876"}], "short": "ab"})
    masker = SecretMasker([secret])

    assert masker.mask("user svc-deployer token tok-9876 port 5432 ab") == \
        "user *** token *** port 5432 ab"
    assert masker.mask("line-one") == "***"
    assert masker.mask('"key": "line-one\\nline-two"') == '"key": "***"'
    assert masker.mask(secret) == "***"


def test_masker_prefers_longest_fragment() -> None:
    masker = SecretMasker(["abcd", "abcdefgh"])

    assert masker.mask("xabcdefghx") == "x***x"


SECRET = "tok/9f8e+7d6c=5b4a"


@pytest.mark.parametrize(("text", "masked"), [
    # base64 of the value alone, and inside a Basic credential at each byte offset.
    (base64.b64encode(SECRET.encode()).decode(), "***"),
    ("Basic " + base64.b64encode(f"u:{SECRET}".encode()).decode(), "Basic dTp***E="),
    (base64.b64encode(f"user:{SECRET}".encode()).decode(), "dXNlcjp***E="),
    (base64.b64encode(f"ab:{SECRET}xyz".encode()).decode(), "YWI6***eHl6"),
    # URL-encoded, with %20 or + for spaces, and as a JSON string's content.
    ("https://ci.example/hook?token=tok%2F9f8e%2B7d6c%3D5b4a&x=1", "https://ci.example/hook?token=***&x=1"),
    ('{"token": "tok/9f8e+7d6c=5b4a"}', '{"token": "***"}'),
])
def test_masker_masks_encoded_forms(text: str, masked: str) -> None:
    assert SecretMasker([SECRET]).mask(text) == masked


def test_masker_masks_json_escaped_value() -> None:
    masker = SecretMasker(['pa"ss\\word'])
    assert masker.mask('{"password": "pa\\"ss\\\\word"}') == '{"password": "***"}'
    assert masker.mask("spaces%20stay") == "spaces%20stay"


def test_masker_from_context_without_secrets() -> None:
    assert not SecretMasker.from_context({"repo": {}})
    assert not SecretMasker.from_context({"secrets": "not a mapping"})
    assert SecretMasker.from_context({"secrets": {"A": "long-enough"}}).mask("long-enough") == "***"


def _split(chunks: list[bytes], masker: SecretMasker) -> list[str]:
    splitter = LineSplitter(max_line_bytes=16, masker=masker)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    return [masker.mask(line) for line in lines + splitter.finish()]


def test_splitter_masks_secret_across_cut() -> None:
    masker = SecretMasker(["tok-1234567"])
    # The secret starts 4 bytes before the 16-byte cut, in every way the
    # output can arrive: one chunk, byte by byte, and without a final LF.
    line = b"x" * 12 + b"tok-1234567" + b" end"
    arrivals = {
        "one chunk": [line + b"\n"],
        "byte by byte": [line[i:i + 1] for i in range(len(line))] + [b"\n"],
        "no final LF": [line[:14], line[14:]],
    }

    for how, chunks in arrivals.items():
        lines = _split(chunks, masker)
        joined = "".join(piece.removesuffix(SPLIT_MARKER) for piece in lines)

        assert joined == "x" * 12 + "*** end", how
        assert not any("tok" in piece or "567" in piece for piece in lines), how


def test_splitter_cuts_long_line_without_secrets() -> None:
    lines = _split([b"y" * 40 + b"\n"], SecretMasker([]))

    assert lines == ["y" * 16 + SPLIT_MARKER, "y" * 16 + SPLIT_MARKER, "y" * 8]


@pytest.mark.parametrize("value", ["", "a", "abc"])
def test_short_secret_is_rejected(value: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        validate_secret_value("API_KEY", value)

    assert str(error.value) == (
        f"secret 'API_KEY' is {len(value)} characters long; values shorter than 4 characters "
        "cannot be masked in logs safely, so store a longer value")
    assert error.value.field == "value"


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", " ab "])
def test_short_secret_with_whitespace_is_rejected(value: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        validate_secret_value("API_KEY", value)

    assert str(error.value) == (
        f"secret 'API_KEY' is {len(value.strip())} characters long without leading and "
        "trailing whitespace; values shorter than 4 characters cannot be masked in logs "
        "safely, so store a longer value")


def test_four_character_secret_is_accepted() -> None:
    validate_secret_value("PIN", "1234")


def test_html_escapes_script_tags() -> None:
    html = HtmlRenderer().line_to_html("<script>alert('x')</script> & more")

    assert html == "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more"


def test_html_keeps_colours_and_escapes_text() -> None:
    html = HtmlRenderer().line_to_html("\x1b[31m<b>red</b>\x1b[0m plain")

    assert html == '<span style="color: #aa0000">&lt;b&gt;red&lt;/b&gt;</span> plain'


def test_html_drops_non_colour_sequences() -> None:
    html = HtmlRenderer().line_to_html("a\x1b]0;window title\x07b\x1b[2Jc\x9bd\x00e")

    assert html == "abcde"


def test_terminal_keeps_colours_only_when_asked() -> None:
    text = "\x1b[1;32mok\x1b[0m \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[5A"

    assert for_terminal(text, color=True) == "\x1b[1;32mok\x1b[0m link "
    assert for_terminal(text, color=False) == "ok link "
    assert plain_text(text) == "ok link "
