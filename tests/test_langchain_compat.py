"""LangChain 1.8 behaviours that ported code relies on, each in both flavours: the
``chain`` decorator, prompt templates, run names, kwargs to functions, fallbacks with
``exception_key``, dict chunks, sequence batching, and the errors LangChain raises."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from helpers import collect, events_of, invoke_of, is_sync, stream_of

from lmstream import (
    AddableDict,
    BaseCallbackHandler,
    CallbackError,
    FakeLLM,
    InvalidInputError,
    MissingVariablesError,
    PromptTemplate,
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnableLambda,
    RunnableMap,
    RunnableParallel,
    RunnablePassthrough,
    StringPromptValue,
    StrOutputParser,
    chain,
    dispatch_custom_event,
)


def batch_of(obj: Any, flavour: str, *args: Any, **kwargs: Any) -> Any:
    """``obj.batch(...)`` or ``await obj.abatch(...)``."""
    if is_sync(flavour):
        return obj.batch(*args, **kwargs)
    return asyncio.run(obj.abatch(*args, **kwargs))


class Names(BaseCallbackHandler):
    """Records the name of every chain run that starts."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.names.append(kwargs["name"])


# -- 3. the chain decorator and RunnableMap -------------------------------------------------


def test_chain_decorator_makes_a_runnable_named_after_the_function(flavour: str) -> None:
    @chain
    def shout(text: str) -> str:
        return text.upper() + "!"

    assert isinstance(shout, RunnableLambda)
    assert shout.get_name() == "shout"
    assert invoke_of(shout, flavour, "hi") == "HI!"
    assert invoke_of(FakeLLM(["ab"]) | shout, flavour, "p") == "AB!"


def test_runnable_map_is_runnable_parallel(flavour: str) -> None:
    assert RunnableMap is RunnableParallel
    both = RunnableMap(a=lambda x: x + 1, b=lambda x: x * 2)
    assert invoke_of(both, flavour, 3) == {"a": 4, "b": 6}


# -- 4. PromptTemplate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "template_format"),
    [("Hi {name}, {x}!", "f-string"), ("Hi {{name}}, {{x}}!", "mustache"),
     ("Hi {{ name }}, {{ x }}!", "jinja2")],
)  # fmt: skip
def test_template_formats_f_string_mustache_and_jinja2(
    flavour: str, template: str, template_format: str
) -> None:
    prompt = PromptTemplate.from_template(template, template_format=template_format)
    assert prompt.template_format == template_format
    assert prompt.input_variables == ["name", "x"]
    value = invoke_of(prompt, flavour, {"name": "Ann", "x": 3})
    assert value == StringPromptValue("Hi Ann, 3!")


def test_mustache_escapes_html_and_renders_sections_as_the_reference_does() -> None:
    template = "{{name}} {{{name}}} {{&name}}{{! note }} {{#items}}<{{.}}>{{/items}}"
    prompt = PromptTemplate.from_template(
        template + "{{^none}} none{{/none}} {{a.b}}", template_format="mustache"
    )
    assert prompt.input_variables == ["a", "items", "name", "none"]
    out = prompt.format(name='<b>&"', items=[1, 2], a={"b": "B"})
    assert out == '&lt;b&gt;&amp;&quot; <b>&" <b>&" <1><2> none B'
    lines = PromptTemplate.from_template(
        "a\n{{#s}}\n- {{x}}\n{{/s}}\nb", template_format="mustache"
    )
    assert lines.format(s=[{"x": 1}, {"x": 2}]) == "a\n- 1\n- 2\nb"
    assert lines.input_variables == ["s"]


def test_validate_template_refuses_variables_not_declared() -> None:
    with pytest.raises(ValueError, match="Invalid prompt schema"):
        PromptTemplate(template="a {b}", input_variables=["c"], validate_template=True)
    ok = PromptTemplate(template="a {b}", input_variables=["b"], validate_template=True)
    assert ok.input_variables == ["b"]
    with pytest.raises(ValueError, match="cannot be validated"):
        PromptTemplate("{{b}}", ["b"], template_format="mustache", validate_template=True)
    # without validation the variables come from the template, as in the reference
    assert PromptTemplate(template="a {b}", input_variables=["c"]).input_variables == ["b"]


def test_partial_variables_fill_values_and_call_functions(flavour: str) -> None:
    prompt = PromptTemplate.from_template("{greeting} {name} at {when}")
    partial = prompt.partial(greeting="Hello", when=lambda: "noon")
    assert partial.input_variables == ["name"]
    assert partial.partial_variables["greeting"] == "Hello"
    assert invoke_of(partial, flavour, {"name": "Bo"}).to_string() == "Hello Bo at noon"
    given = PromptTemplate.from_template("{a}{b}", partial_variables={"b": "!"})
    assert given.input_variables == ["a"]
    assert invoke_of(given, flavour, "x").to_string() == "x!"


def test_templates_add_up_with_templates_and_strings(flavour: str) -> None:
    joined = PromptTemplate.from_template("a {b}") + PromptTemplate.from_template(" c {d}")
    assert joined == PromptTemplate.from_template("a {b} c {d}")
    assert invoke_of(joined, flavour, {"b": 1, "d": 2}).to_string() == "a 1 c 2"
    more = joined + " and {e}"
    assert more.input_variables == ["b", "d", "e"]
    partials = PromptTemplate.from_template("{x}").partial(x="1") + "{y}"
    assert partials.partial_variables == {"x": "1"} and partials.input_variables == ["y"]
    with pytest.raises(ValueError, match="different formats"):
        PromptTemplate.from_template("{{a}}", template_format="mustache") + joined


def test_equal_templates_are_equal() -> None:
    assert PromptTemplate.from_template("a {b}") == PromptTemplate.from_template("a {b}")
    assert PromptTemplate.from_template("a {b}") != PromptTemplate.from_template("a {c}")
    assert PromptTemplate.from_template("{b}") != PromptTemplate.from_template(
        "{b}", template_format="mustache"
    )
    assert len({PromptTemplate.from_template("x {y}"), PromptTemplate.from_template("x {y}")}) == 1


def test_a_missing_variable_raises_a_key_error(flavour: str) -> None:
    prompt = PromptTemplate.from_template("{topic} in {n} words")
    with pytest.raises(KeyError, match="missing variables \\['n'\\]") as info:
        invoke_of(prompt, flavour, {"topic": "otters"})
    assert isinstance(info.value, MissingVariablesError)
    assert isinstance(info.value, InvalidInputError)
    with pytest.raises(KeyError):
        prompt.format(topic="otters")


def test_f_string_fields_with_attribute_access_are_refused() -> None:
    for template in ("{a.b}", "{a[0]}", "{a:{b}}"):
        with pytest.raises(ValueError, match="f-string"):
            PromptTemplate.from_template(template)


# -- 5. run names of parallel maps and assigns ------------------------------------------------


def test_parallel_and_assign_runs_are_named_after_their_keys(flavour: str) -> None:
    names = Names()
    seq = RunnableParallel(context=lambda x: x, question=lambda x: x) | RunnablePassthrough.assign(
        answer=lambda d: d["question"]
    )
    invoke_of(seq, flavour, "q", {"callbacks": [names]})
    assert "RunnableParallel<context,question>" in names.names
    assert "RunnableAssign<answer>" in names.names
    assert "RunnableParallel<answer>" in names.names  # the map inside the assign
    names.names.clear()
    collect(stream_of(seq, flavour, "q", {"callbacks": [names]}))
    assert {"RunnableParallel<context,question>", "RunnableAssign<answer>"} <= set(names.names)


def test_include_names_filters_written_for_langchain_keep_working() -> None:
    seq = RunnableParallel(context=lambda x: x, question=lambda x: x) | RunnablePassthrough.assign(
        answer=lambda d: d["question"]
    )
    events = events_of(seq, "q", include_names=["RunnableAssign<answer>"])
    assert [e["name"] for e in events] == ["RunnableAssign<answer>"] * 5
    assert [e["data"].get("chunk") for e in events[1:4]] == [
        {"context": "q"}, {"question": "q"}, {"answer": "q"}
    ]  # fmt: skip
    assert events[-1]["data"]["output"] == {"context": "q", "question": "q", "answer": "q"}


# -- 6. kwargs and config reach user functions ------------------------------------------------


def takes_kwargs(x: int, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    return x, kwargs


def test_bound_and_call_kwargs_reach_a_function_that_takes_kwargs(flavour: str) -> None:
    bound = RunnableLambda(takes_kwargs).bind(n=10)
    assert invoke_of(bound, flavour, 1) == (1, {"n": 10})
    assert collect(stream_of(bound, flavour, 1)) == [(1, {"n": 10})]
    assert invoke_of(RunnableLambda(takes_kwargs), flavour, 2, None, n=3) == (2, {"n": 3})
    assert batch_of(bound, flavour, [1, 2]) == [(1, {"n": 10}), (2, {"n": 10})]

    def gen(chunks: Any, **kwargs: Any) -> Any:
        for chunk in chunks:
            yield (chunk, kwargs)

    assert collect(stream_of(RunnableGenerator(gen).bind(k=1), flavour, "a")) == [("a", {"k": 1})]


def test_passthrough_function_gets_the_config_the_passthrough_was_called_with(
    flavour: str,
) -> None:
    seen: list[Any] = []

    def record(value: Any, config: RunnableConfig, **kwargs: Any) -> None:
        seen.append((value, sorted(config), config["metadata"], kwargs))

    passthrough = RunnablePassthrough(record)
    config: RunnableConfig = {"metadata": {"who": "me"}}
    assert invoke_of(passthrough, flavour, "x", config, k=1) == "x"
    assert collect(stream_of(passthrough, flavour, "y", config)) == ["y"]
    keys = ["callbacks", "configurable", "metadata", "recursion_limit", "tags"]
    assert seen == [("x", keys, {"who": "me"}, {"k": 1}), ("y", keys, {"who": "me"}, {})]


# -- 7. generic classes and the repr of lambdas -----------------------------------------------


def test_lambda_and_generator_classes_take_type_arguments(flavour: str) -> None:
    add_one = RunnableLambda[int, int](lambda x: x + 1)
    assert invoke_of(add_one, flavour, 1) == 2

    def twice(chunks: Any) -> Any:
        for chunk in chunks:
            yield chunk * 2

    assert collect(stream_of(RunnableGenerator[int, int](twice), flavour, 2)) == [4]


def test_the_repr_of_a_lambda_shows_its_source() -> None:
    assert repr(RunnableLambda(lambda x: x + 1)) == "RunnableLambda(lambda x: x + 1)"
    assert repr(RunnableLambda(takes_kwargs)) == "RunnableLambda(takes_kwargs)"
    assert repr(RunnableLambda(len)) == "RunnableLambda(len)"


# -- 8. fallbacks with exception_key ----------------------------------------------------------


def fails(d: dict[str, Any]) -> str:
    raise ValueError(f"no {d['q']}")


def explain(d: dict[str, Any]) -> str:
    return f"{d['q']}: {d['exception']}"


def test_fallbacks_hand_the_error_on_under_exception_key(flavour: str) -> None:
    safe = RunnableLambda(fails).with_fallbacks(
        [RunnableLambda(explain)], exception_key="exception"
    )
    question = {"q": "a"}
    assert invoke_of(safe, flavour, question) == "a: no a"
    assert question == {"q": "a"}  # the caller's input is left as it was
    assert batch_of(safe, flavour, [{"q": "b"}, {"q": "c"}]) == ["b: no b", "c: no c"]
    assert collect(stream_of(safe, flavour, {"q": "d"})) == ["d: no d"]
    chained = RunnableLambda(lambda d: d) | safe
    assert collect(stream_of(chained, flavour, {"q": "e"})) == ["e: no e"]


def test_exception_key_needs_a_dict_input(flavour: str) -> None:
    safe = RunnableLambda(fails).with_fallbacks([RunnableLambda(explain)], exception_key="e")
    with pytest.raises(ValueError, match="must be a dictionary"):
        invoke_of(safe, flavour, "not a dict")


# -- 9. dict chunks ---------------------------------------------------------------------------


def test_plain_dict_chunks_replace_and_addable_dicts_add_up(flavour: str) -> None:
    def status(x: Any) -> Any:
        yield {"status": "working"}
        yield {"status": "done"}

    def addable(x: Any) -> Any:
        yield AddableDict(status="work")
        yield AddableDict(status="ing")

    seq = RunnableGenerator(status) | (lambda d: d)
    assert invoke_of(seq, flavour, 1) == {"status": "done"}
    assert collect(stream_of(seq, flavour, 1)) == [{"status": "done"}]
    assert invoke_of(RunnableGenerator(status), flavour, 1) == {"status": "done"}
    assert invoke_of(RunnableGenerator(addable) | (lambda d: d), flavour, 1) == {
        "status": "working"
    }


def test_addable_dicts_with_clashing_value_types_raise_a_type_error() -> None:
    with pytest.raises(TypeError, match="Cannot add incompatible types for key 'a'"):
        AddableDict(a=1) + AddableDict(a="x")
    assert AddableDict(a=1, b=None) + {"b": 2, "c": 3} == {"a": 1, "b": 2, "c": 3}
    assert {"a": "x"} + AddableDict(a="y") == {"a": "xy"}


def test_a_chunk_that_does_not_add_up_replaces_the_total(flavour: str) -> None:
    def clash(x: Any) -> Any:
        yield AddableDict(a=1)
        yield AddableDict(a="x")

    assert invoke_of(RunnableGenerator(clash) | (lambda d: d), flavour, 1) == {"a": "x"}


# -- 10. RunnableSequence.batch calls each step's own batch -----------------------------------


class OnlyBatches(Runnable[Any, Any]):
    """A step that can only batch: invoke refuses; it records each batch it gets."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        raise AssertionError("invoke was called instead of batch")

    def _all(self, inputs: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
        self.batches.append(list(inputs))
        out: list[Any] = []
        for x in inputs:
            out.append(ValueError(f"bad {x}") if x == "bad" else f"{x}{kwargs.get('end', '')}")
        if not kwargs.get("return_exceptions") and any(isinstance(o, Exception) for o in out):
            raise next(o for o in out if isinstance(o, Exception))
        return out

    def batch(self, inputs: Any, config: Any = None, **kwargs: Any) -> list[Any]:
        return self._all(inputs, kwargs)

    async def abatch(self, inputs: Any, config: Any = None, **kwargs: Any) -> list[Any]:
        return self._all(inputs, kwargs)


def test_sequence_batch_calls_each_steps_own_batch(flavour: str) -> None:
    first, last = OnlyBatches(), OnlyBatches()
    seq = first | RunnableLambda(str.upper) | last
    # call kwargs go to the first step only
    assert batch_of(seq, flavour, ["a", "b", "c"], end="!") == ["A!", "B!", "C!"]
    assert first.batches == [["a", "b", "c"]] and last.batches == [["A!", "B!", "C!"]]
    names = Names()
    batch_of(seq, flavour, ["x", "y"], {"callbacks": [names]})
    assert names.names.count("RunnableSequence") == 2  # one run per input


def test_sequence_batch_drops_failed_inputs_from_later_steps(flavour: str) -> None:
    first, last = OnlyBatches(), OnlyBatches()
    seq = first | last
    out = batch_of(seq, flavour, ["a", "bad", "c"], return_exceptions=True)
    assert out[0] == "a" and out[2] == "c" and isinstance(out[1], ValueError)
    assert last.batches == [["a", "c"]]
    with pytest.raises(ValueError, match="bad bad"):
        batch_of(seq, flavour, ["a", "bad"])
    assert batch_of(seq, flavour, []) == []


# -- 11. errors as the reference raises them --------------------------------------------------


def test_a_custom_event_outside_a_run_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError) as info:
        dispatch_custom_event("progress", {"n": 1})
    assert isinstance(info.value, CallbackError)


def test_with_config_hands_on_a_config_with_metadata_and_configurable(flavour: str) -> None:
    class Echo(Runnable[Any, Any]):
        def invoke(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Any:
            assert config is not None
            return config["metadata"], config["configurable"], config["tags"]

    bound = Echo().with_config(tags=["t"], metadata={"m": 1})
    assert invoke_of(bound, flavour, 1) == ({"m": 1}, {}, ["t"])
    assert invoke_of(Echo().bind(k=1), flavour, 1) == ({}, {}, [])


def test_retry_takes_a_predicate_over_the_error(flavour: str) -> None:
    calls: list[str] = []

    def flaky(x: str) -> str:
        calls.append(x)
        if len(calls) < 3:
            raise ValueError("transient" if len(calls) == 1 else "again")
        return x

    retried = RunnableLambda(flaky).with_retry(
        retry_if_exception_type=lambda e: "transient" in str(e) or "again" in str(e),
        wait_exponential_jitter=False,
    )
    assert invoke_of(retried, flavour, "ok") == "ok" and len(calls) == 3
    calls.clear()
    never = RunnableLambda(flaky).with_retry(
        retry_if_exception_type=lambda e: False, wait_exponential_jitter=False
    )
    with pytest.raises(ValueError, match="transient"):
        invoke_of(never, flavour, "x")
    assert len(calls) == 1


def test_retry_refuses_what_is_neither_exception_classes_nor_a_predicate() -> None:
    with pytest.raises(InvalidInputError, match="predicate"):
        RunnableLambda(len).with_retry(retry_if_exception_type=(lambda e: True,))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="predicate"):
        RunnableLambda(len).with_retry(retry_if_exception_type=(int,))  # type: ignore[arg-type]


def test_a_prompt_llm_parser_chain_ported_from_langchain_streams(flavour: str) -> None:
    prompt = PromptTemplate.from_template("{{topic}}!", template_format="mustache")
    seq = prompt | FakeLLM(["abc"]) | StrOutputParser()
    assert collect(stream_of(seq, flavour, {"topic": "t"})) == ["a", "b", "c"]
