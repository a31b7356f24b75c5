"""Third-party clients nobody here wrote, driven through a running chatd as a user would.

openai-node and ollama-js (the official JavaScript SDKs, run by ``node`` from
``tests/clients``, installed there by ``.ci/run`` at pinned versions), langchain-openai,
langchain-ollama and litellm as a client. Each does a two-turn tool conversation (the
model calls a tool, the client sends its result, the model answers) through chatd to an
Ollama-family upstream (the local Ollama) and an OpenAI-family one (OpenRouter), streams
a plain answer, and lists models and makes embeddings where the client has them. The
upstreams are the fakes of :mod:`test_front_doors`, which check what each upstream
checks: the fake OpenAI refuses a tool history whose calls and results do not pair up by
id, as OpenAI does.

The Python clients are synchronous; each runs in a worker thread
(``anyio.to_thread.run_sync``) so chatd and the fakes keep serving on the test's own event
loop, asyncio or trio. A test that shows a defect in a part of chatd this file does not
own is marked ``xfail(strict=True)`` with the defect named, so it turns into a failure the
day the defect is fixed (and its mark must go).
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest
from fake_ollama import vector_for
from fake_openai import REPLY
from test_front_doors import LOCAL_REPLY, TOKEN, TOOL, USABLE, Stack, stack
from test_front_doors import pytestmark as _front_doors_marks

pytestmark = [
    *_front_doors_marks,
    # litellm and langchain touch deprecated pydantic and stdlib APIs on import and call;
    # those are theirs, not chatd's.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]

T = TypeVar("T")

CLIENTS = Path(__file__).parent / "clients"
OLLAMA_MODEL = "ollama/qwen3:4b"
OPENAI_MODEL = "openrouter/moonshotai/kimi-k2"
EMBED_LOCAL = "nomic-embed-text"
EMBED_OPENAI = "openrouter/openai/text-embedding-3-small"
TAGS = ["fast", "fast:latest", "smart", "smart:latest", *USABLE[2:]]
WEATHER = {"temperature": 3}

def _node_ready() -> bool:
    return shutil.which("node") is not None and all(
        (CLIENTS / "node_modules" / name / "package.json").is_file()
        for name in ("openai", "ollama"))


#: The JavaScript clients are installed by .ci/run; outside CI a checkout that has not run
#: it skips them (in CI a missing install fails, so it cannot pass unseen).
needs_node = pytest.mark.skipif(
    not _node_ready() and not os.environ.get("CI"),
    reason="run .ci/run (or npm ci --prefix tests/clients) to install the JS clients",
)


async def node(script: str, op: str, s: Stack, **args: Any) -> dict[str, Any]:
    """Run ``tests/clients/<script>`` for ``op``: ``{"ok", "result" | "error"}``.

    Checked by :func:`ok` after the stack has closed: a failure raised inside ``stack()``
    would leave trio's accepted sockets for the garbage collector (a ResourceWarning in
    some later test).
    """
    done = await anyio.run_process(
        ["node", str(CLIENTS / script), op,
         json.dumps({"url": s.url, "token": TOKEN, "tool": TOOL, **args})],
        cwd=CLIENTS, check=False)
    if done.returncode != 0:
        return {"ok": False, "error": done.stderr.decode()}
    out: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return out


def ok(out: dict[str, Any]) -> dict[str, Any]:
    """The result of a :func:`node` run that succeeded; else the failure, as it was."""
    assert out["ok"], out.get("error")
    result: dict[str, Any] = out["result"]
    return result


async def threaded(fn: Callable[[], T]) -> T:
    """A synchronous client call, off the event loop that serves chatd and the fakes."""
    return await anyio.to_thread.run_sync(fn)


async def captured(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` (a client conversation) off the loop; its exception, returned rather than
    raised inside ``stack()`` (see :func:`node`)."""
    try:
        await threaded(fn)
    except Exception as exc:
        return exc
    return None


def fake_for(s: Stack, model: str) -> Any:
    return s.local if model.startswith("ollama/") or "/" not in model else s.compat


def reply_for(model: str) -> str:
    return LOCAL_REPLY if model.startswith("ollama/") else REPLY


def check_tool_turns(s: Stack, model: str) -> None:
    """The upstream saw both turns: the second with the call and its result, paired."""
    fake = fake_for(s, model)
    bodies = fake.requests if fake is s.local else fake.bodies("openrouter")
    assert len(bodies) == 2
    roles = [m["role"] for m in bodies[1]["messages"]]
    assert roles[-2:] == ["assistant", "tool"]
    if fake is s.compat:
        call_id = bodies[1]["messages"][-2]["tool_calls"][0]["id"]
        assert bodies[1]["messages"][-1]["tool_call_id"] == call_id


TOOL_TARGETS = [
    pytest.param(OLLAMA_MODEL, id="ollama"),
    pytest.param(OPENAI_MODEL, id="openai-family"),
]
OLLAMA_DOOR_TARGETS = [
    pytest.param(OLLAMA_MODEL, id="ollama"),
    pytest.param(OPENAI_MODEL, id="openai-family"),
]


# --- openai-node ---------------------------------------------------------------------------

@needs_node
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", TOOL_TARGETS)
async def test_openai_node_tool_conversation(tmp_path: Path, model: str, stream: bool) -> None:
    async with stack(tmp_path) as s:
        out = await node("openai_node.mjs", "tools", s, model=model, stream=stream)
    r = ok(out)
    assert r["finish1"] == "tool_calls"
    assert (r["call"]["name"], r["call"]["arguments"]) == ("get_weather",
                                                           fake_for(s, model).tool_arguments)
    assert r["call"]["id"]
    assert (r["finish2"], r["content2"]) == ("stop", reply_for(model))
    check_tool_turns(s, model)


@needs_node
async def test_openai_node_models(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        out = await node("openai_node.mjs", "models", s)
    r = ok(out)
    assert r["ids"] == USABLE and r["retrieved"] == USABLE


@needs_node
@pytest.mark.parametrize("model", [f"ollama/{EMBED_LOCAL}", EMBED_OPENAI])
async def test_openai_node_embeddings(tmp_path: Path, model: str) -> None:
    """openai-node asks base64 unless told and decodes it into a Float32Array."""
    async with stack(tmp_path) as s:
        s.local.models.add(EMBED_LOCAL)
        out = await node("openai_node.mjs", "embeddings", s, model=model)
    r = ok(out)
    expected = [vector_for("a b"), vector_for("c")]
    assert r["base64"] == expected and r["floats"] == expected
    assert r["usage"]["prompt_tokens"] == 3


# --- ollama-js -------------------------------------------------------------------------------

@needs_node
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", OLLAMA_DOOR_TARGETS)
async def test_ollama_js_tool_conversation(tmp_path: Path, model: str, stream: bool) -> None:
    async with stack(tmp_path) as s:
        out = await node("ollama_js.mjs", "tools", s, model=model, stream=stream)
    r = ok(out)
    assert (r["call"]["name"], r["call"]["arguments"]) == ("get_weather",
                                                           fake_for(s, model).tool_arguments)
    assert (r["done2"], r["content2"]) == ("stop", reply_for(model))
    check_tool_turns(s, model)


@needs_node
async def test_ollama_js_list_show_ps(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        outs = [await node("ollama_js.mjs", "list", s),
                await node("ollama_js.mjs", "show", s, model="qwen3:4b"),
                await node("ollama_js.mjs", "show", s, model=OPENAI_MODEL),
                await node("ollama_js.mjs", "ps", s, model="qwen3:4b")]
    listed, local, routed, ps = map(ok, outs)
    assert listed["names"] == TAGS
    assert local == {"capabilities": ["completion", "tools", "thinking"], "family": "qwen3"}
    assert routed == {"capabilities": ["completion", "tools"], "family": "openrouter"}
    assert ps["names"] == ["qwen3:4b"]


@needs_node
@pytest.mark.parametrize("model", [EMBED_LOCAL, EMBED_OPENAI])
async def test_ollama_js_embed(tmp_path: Path, model: str) -> None:
    async with stack(tmp_path) as s:
        s.local.models.add(EMBED_LOCAL)
        out = await node("ollama_js.mjs", "embed", s, model=model)
    r = ok(out)
    assert r["embeddings"] == [vector_for("a b"), vector_for("c")]
    assert r["legacy"] == vector_for("a b")
    assert r["count"] == 3


# --- langchain-openai ------------------------------------------------------------------------

def _langchain_conversation(chat: Any, got: dict[str, Any]) -> None:
    """Turn one (the model calls the tool), then the result back and turn two."""
    from langchain_core.messages import HumanMessage, ToolMessage

    history: list[Any] = [HumanMessage("What is the weather in Oslo?")]
    first = chat.invoke(history)
    [call] = first.tool_calls
    got["call"] = call
    history += [first, ToolMessage(json.dumps(WEATHER), tool_call_id=call["id"])]
    got["content"] = chat.invoke(history).content


@pytest.mark.parametrize("model", TOOL_TARGETS)
async def test_langchain_openai_tool_conversation(tmp_path: Path, model: str) -> None:
    from langchain_openai import ChatOpenAI

    got: dict[str, Any] = {}
    async with stack(tmp_path) as s:
        chat = ChatOpenAI(model=model, base_url=f"{s.url}/v1", api_key=TOKEN,  # type: ignore[arg-type]
                          max_retries=0, timeout=10).bind_tools([TOOL])
        failure = await captured(partial(_langchain_conversation, chat, got))
    if failure is not None:
        raise failure
    assert (got["call"]["name"], got["call"]["args"]) == ("get_weather",
                                                          fake_for(s, model).tool_arguments)
    assert got["content"] == reply_for(model)
    check_tool_turns(s, model)


async def test_langchain_openai_embeddings(tmp_path: Path) -> None:
    from langchain_openai import OpenAIEmbeddings

    async with stack(tmp_path) as s:
        s.local.models.add(EMBED_LOCAL)
        vectors = {}
        for model in (f"ollama/{EMBED_LOCAL}", EMBED_OPENAI):
            # check_embedding_ctx_length=False: otherwise it tokenizes with tiktoken, whose
            # encodings are downloaded at run time.
            emb = OpenAIEmbeddings(model=model, base_url=f"{s.url}/v1", api_key=TOKEN,  # type: ignore[arg-type]
                                   check_embedding_ctx_length=False, max_retries=0)
            vectors[model] = await threaded(partial(emb.embed_documents, ["a b", "c"]))
    assert all(v == [vector_for("a b"), vector_for("c")] for v in vectors.values())


# --- langchain-ollama ------------------------------------------------------------------------

def _chat_ollama(s: Stack, model: str, closing: list[Any]) -> Any:
    from langchain_ollama import ChatOllama
    from langchain_ollama._utils import validate_model

    chat = ChatOllama(model=model, base_url=s.url,
                      client_kwargs={"headers": {"Authorization": f"Bearer {TOKEN}"}})
    closing.append(chat)
    # What validate_model_on_init=True runs on construction (its /api/tags check), called
    # once the model is on the closing list: a refused model leaves no client open.
    validate_model(chat._client, model)
    return chat


@pytest.mark.parametrize("model", OLLAMA_DOOR_TARGETS)
async def test_langchain_ollama_tool_conversation(tmp_path: Path, model: str,
                                                  closing: list[Any]) -> None:
    got: dict[str, Any] = {}
    async with stack(tmp_path) as s:
        chat = (await threaded(lambda: _chat_ollama(s, model, closing))).bind_tools([TOOL])
        failure = await captured(partial(_langchain_conversation, chat, got))
    if failure is not None:
        raise failure
    assert (got["call"]["name"], got["call"]["args"]) == ("get_weather",
                                                          fake_for(s, model).tool_arguments)
    assert got["content"] == reply_for(model)
    check_tool_turns(s, model)


async def test_langchain_ollama_validates_routed_names(tmp_path: Path,
                                                       closing: list[Any]) -> None:
    """validate_model_on_init reads /api/tags: every usable name passes (a tier too, bare
    or as ``:latest``), a name chatd could not serve does not."""
    async with stack(tmp_path) as s:
        for name in ("smart", "smart:latest", OPENAI_MODEL, "qwen3:4b", "opencode/glm-5.1"):
            await threaded(partial(_chat_ollama, s, name, closing))
        with pytest.raises(ValueError, match="not found"):
            await threaded(lambda: _chat_ollama(s, "no-such-model", closing))


async def test_langchain_ollama_embeddings(tmp_path: Path, closing: list[Any]) -> None:
    from langchain_ollama import OllamaEmbeddings

    async with stack(tmp_path) as s:
        s.local.models.add(EMBED_LOCAL)
        vectors = {}
        for model in (EMBED_LOCAL, EMBED_OPENAI):
            emb = OllamaEmbeddings(model=model, base_url=s.url, client_kwargs={
                "headers": {"Authorization": f"Bearer {TOKEN}"}})
            closing.append(emb)
            vectors[model] = await threaded(partial(emb.embed_documents, ["a b", "c"]))
    assert all(v == [vector_for("a b"), vector_for("c")] for v in vectors.values())


# --- litellm as a client ---------------------------------------------------------------------

def _litellm() -> Any:
    # Before the import: litellm fetches its model price map from the network otherwise.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    litellm.telemetry = False
    return litellm


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Close what the clients leave open, so their sockets are not found unclosed (a
    ResourceWarning, an error here) by the garbage collector in some later test: litellm
    caches the SDK and httpx clients it makes, and a langchain-ollama model never closes
    its ``ollama.Client``. Yields a list to put langchain models on."""
    models: list[Any] = []
    yield models
    for model in models:
        for name in ("_client", "_async_client"):
            inner = getattr(getattr(model, name, None), "_client", None)
            close = getattr(inner, "close", None)
            if close is not None and not inspect.iscoroutinefunction(close):
                close()
    if "litellm" in sys.modules:
        cache = sys.modules["litellm"].in_memory_llm_clients_cache
        for client in list(cache.cache_dict.values()):
            close = getattr(client, "close", None)
            if close is not None and not inspect.iscoroutinefunction(close):
                close()
        cache.flush_cache()
    gc.collect()


LITELLM_TARGETS = [
    # (how litellm names it, the api_base suffix, chatd's model name)
    pytest.param("openai/" + OLLAMA_MODEL, "/v1", OLLAMA_MODEL, id="openai-door-ollama"),
    pytest.param("openai/" + OPENAI_MODEL, "/v1", OPENAI_MODEL, id="openai-door-openai-family"),
    pytest.param("ollama_chat/" + OLLAMA_MODEL, "", OLLAMA_MODEL, id="ollama-door-ollama"),
    pytest.param("ollama_chat/" + OPENAI_MODEL, "", OPENAI_MODEL,
                 id="ollama-door-openai-family"),
]


@pytest.mark.parametrize(("name", "suffix", "model"), LITELLM_TARGETS)
async def test_litellm_tool_conversation(tmp_path: Path, name: str, suffix: str,
                                         model: str, closing: list[Any]) -> None:
    litellm = _litellm()
    got: dict[str, Any] = {}

    def conversation(url: str) -> None:
        kwargs = {"model": name, "api_base": url + suffix, "api_key": TOKEN,
                  "tools": [TOOL], "timeout": 10, "num_retries": 0}
        messages: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]
        message = litellm.completion(messages=messages, **kwargs).choices[0].message
        [got["call"]] = message.tool_calls
        messages += [message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": got["call"].id,
                      "content": json.dumps(WEATHER)}]
        got["content"] = litellm.completion(messages=messages, **kwargs).choices[0].message.content

    async with stack(tmp_path) as s:
        failure = await captured(partial(conversation, s.url))
    if failure is not None:
        raise failure
    assert got["call"].function.name == "get_weather"
    assert json.loads(got["call"].function.arguments) == fake_for(s, model).tool_arguments
    assert got["content"] == reply_for(model)
    check_tool_turns(s, model)


@pytest.mark.parametrize(("name", "suffix"), [
    pytest.param(f"openai/ollama/{EMBED_LOCAL}", "/v1", id="openai-door-ollama"),
    pytest.param(f"openai/{EMBED_OPENAI}", "/v1", id="openai-door-openai-family"),
    pytest.param(f"ollama/{EMBED_LOCAL}", "", id="ollama-door-ollama"),
    pytest.param(f"ollama/{EMBED_OPENAI}", "", id="ollama-door-openai-family"),
])
async def test_litellm_embeddings(tmp_path: Path, name: str, suffix: str,
                                  closing: list[Any]) -> None:
    litellm = _litellm()
    async with stack(tmp_path) as s:
        s.local.models.add(EMBED_LOCAL)
        r = await threaded(lambda: litellm.embedding(
            model=name, input=["a b", "c"], api_base=s.url + suffix, api_key=TOKEN,
            timeout=10))
    assert [d["embedding"] for d in r.data] == [vector_for("a b"), vector_for("c")]


async def test_litellm_lists_models(tmp_path: Path, closing: list[Any]) -> None:
    """litellm's provider-endpoint model check reads chatd's /v1/models."""
    litellm = _litellm()
    async with stack(tmp_path) as s:
        names = await threaded(lambda: litellm.get_valid_models(
            check_provider_endpoint=True, custom_llm_provider="openai",
            litellm_params=litellm.types.router.LiteLLM_Params(
                model="openai/x", api_base=f"{s.url}/v1", api_key=TOKEN)))
    assert [n.removeprefix("openai/") for n in names] == USABLE




# --- streamed answers, each Python client, each door, each family --------------------------

def _langchain_stream(chat: Any, got: dict[str, Any]) -> None:
    from langchain_core.messages import HumanMessage

    got["pieces"] = [c.content for c in chat.stream([HumanMessage("Say hello.")])]


@pytest.mark.parametrize("model", TOOL_TARGETS)
async def test_langchain_openai_streams(tmp_path: Path, model: str) -> None:
    from langchain_openai import ChatOpenAI

    got: dict[str, Any] = {}
    async with stack(tmp_path) as s:
        chat = ChatOpenAI(model=model, base_url=f"{s.url}/v1", api_key=TOKEN,  # type: ignore[arg-type]
                          max_retries=0, timeout=10)
        failure = await captured(partial(_langchain_stream, chat, got))
    if failure is not None:
        raise failure
    assert len([p for p in got["pieces"] if p]) > 1
    assert "".join(got["pieces"]) == reply_for(model)


@pytest.mark.parametrize("model", OLLAMA_DOOR_TARGETS)
async def test_langchain_ollama_streams(tmp_path: Path, model: str,
                                        closing: list[Any]) -> None:
    got: dict[str, Any] = {}
    async with stack(tmp_path) as s:
        chat = await threaded(lambda: _chat_ollama(s, model, closing))
        failure = await captured(partial(_langchain_stream, chat, got))
    if failure is not None:
        raise failure
    assert len([p for p in got["pieces"] if p]) > 1
    assert "".join(got["pieces"]) == reply_for(model)


@pytest.mark.parametrize(("name", "suffix", "model"), LITELLM_TARGETS)
# litellm's stream handler builds a pydantic model of its own TypedDicts, and pydantic
# warns about their ReadOnly items the first time: litellm's, not chatd's.
@pytest.mark.filterwarnings("ignore:Item .* is using the .ReadOnly. qualifier")
async def test_litellm_streams(tmp_path: Path, name: str, suffix: str, model: str,
                               closing: list[Any]) -> None:
    litellm = _litellm()
    got: dict[str, Any] = {}

    def streamed(url: str) -> None:
        chunks = litellm.completion(model=name, api_base=url + suffix, api_key=TOKEN,
                                    messages=[{"role": "user", "content": "Say hello."}],
                                    stream=True, timeout=10, num_retries=0)
        got["pieces"] = [c.choices[0].delta.content or "" for c in chunks if c.choices]

    async with stack(tmp_path) as s:
        failure = await captured(partial(streamed, s.url))
    if failure is not None:
        raise failure
    assert len([p for p in got["pieces"] if p]) > 1
    assert "".join(got["pieces"]) == reply_for(model)
