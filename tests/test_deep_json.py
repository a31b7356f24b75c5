"""JSON that orjson reads but cannot write: 255 to 1,024 levels of nesting.

orjson decodes up to 1,024 levels and encodes only 254, raising TypeError past that. Each
place that re-encodes a decoded value must turn that into a clear error, never a 500.
A client's deep value is refused as a 400 where chatd encodes it for the upstream;
a deep value from an upstream is its bad response.
"""

from __future__ import annotations

import orjson
import pytest

from chatproto import (
    ChatError,
    ChatResponse,
    Provider,
    Route,
    ToolCall,
    codec_for,
    parse_chat_request,
)
from chatproto.dialects.ollama import parse_tags, render_chat, tag_entry

DEEP = b'{"a":' * 300 + b"1" + b"}" * 300
PROVIDERS = {
    "ollama_chat": Provider(name="ollama", api="ollama_chat", base_url="http://o.test"),
    "ollama_generate": Provider(name="ollama_cloud", api="ollama_generate",
                                base_url="https://ollama.test"),
    "openai_chat": Provider(name="openrouter", api="openai_chat", base_url="https://or.test"),
}


# /api/generate refuses tools before encoding anything (tested in its codec's tests).
@pytest.mark.parametrize(("api", "field"), [
    (api, field) for api in sorted(PROVIDERS) for field in ("format", "tools")
    if (api, field) != ("ollama_generate", "tools")
])
def test_client_value_too_deep_to_send_is_400(api: str, field: str) -> None:
    """Parsing accepts it (it is valid JSON); encoding it for the upstream cannot."""
    value = DEEP if field == "format" else b'[{"type":"function","function":' + DEEP + b"}]"
    body = (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"' + field.encode()
            + b'":' + value + b"}")
    request = parse_chat_request(body)
    provider = PROVIDERS[api]
    with pytest.raises(ChatError) as info:
        codec_for(api).build_request(request, Route(provider=provider.name,
                                                    upstream_model="m"), provider)
    assert (info.value.type, info.value.status) == ("invalid_request", 400)


def test_ollama_tool_call_arguments_too_deep_are_bad_upstream_response() -> None:
    body = orjson.dumps({"model": "m", "message": {"role": "assistant", "content": "",
                         "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
                         "done": True, "done_reason": "stop"})
    body = body.replace(b'"arguments":{}', b'"arguments":' + b'{"a":' * 300 + b"1" + b"}" * 300)
    with pytest.raises(ChatError) as info:
        codec_for("ollama_chat").parse_response("ollama", body)
    assert (info.value.type, info.value.status) == ("bad_upstream_response", 502)


def test_ollama_error_object_too_deep_keeps_its_status() -> None:
    body = b'{"error":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}"
    err = codec_for("ollama_chat").parse_error("ollama", 429, [], body, now=0.0)
    assert (err.type, err.status) == ("rate_limited", 429)
    assert "nested too deeply" in err.message


def test_openrouter_metadata_raw_too_deep_is_left_out() -> None:
    raw = b'{"a":' * 300 + b"1" + b"}" * 300
    body = (b'{"error":{"code":502,"message":"Provider returned error","metadata":'
            b'{"provider_name":"Groq","raw":' + raw + b"}}}")
    err = codec_for("openai_chat").parse_error("openrouter", 502, [], body, now=0.0)
    assert (err.type, err.status) == ("upstream_error", 502)
    assert err.message == "Provider returned error (Groq)"


def test_ollama_front_door_refuses_tool_arguments_it_cannot_re_encode() -> None:
    arguments = '{"a":' * 300 + "1" + "}" * 300
    resp = ChatResponse(content="", finish_reason="tool_calls",
                        tool_calls=(ToolCall(id="c", name="f", arguments=arguments),))
    with pytest.raises(ChatError) as info:
        render_chat(resp, model="m", created_at="2026-01-01T00:00:00Z", total_duration_ns=1)
    assert (info.value.type, info.value.status) == ("bad_upstream_response", 502)


def test_tags_entry_too_deep_keeps_only_what_can_be_re_encoded() -> None:
    """An upstream entry is re-rendered from its documented fields only, so a deep value in
    it can never make the list unencodable (a 500)."""
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    body = b'{"models":[{"name":"ok"},{"name":"deep","details":' + deep + b"}]}"
    listed = parse_tags("ollama", body, limit=10)
    assert [m.id for m in listed] == ["ok", "deep"]
    entry = tag_entry("deep", listed[1])
    assert entry["details"]["family"] == ""
    orjson.dumps(entry)
