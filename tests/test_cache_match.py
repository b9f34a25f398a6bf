"""Cache.delete_match: a Redis glob within the namespace, the same keys dropped in L1, in Redis and elsewhere;
match_field / glob_escape keep a user-supplied part from widening the match."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infraboot import ConfigError, RedisComponent, RedisSettings, SystemInitializer
from infraboot._cache._keys import KeyBuilder
from infraboot._cache._match import glob_matcher
from infraboot.cache import Cache, cached, glob_escape, match_field


@pytest.fixture
async def real(redis_url: str) -> AsyncIterator[SystemInitializer]:
    """A started system on the real Redis, the test's keys (``t-match*``) removed before and after."""
    system = SystemInitializer([RedisComponent(RedisSettings(url=redis_url))], check_interval=None)
    await system.initialize_all()
    client = system.get("redis")
    await _wipe(client)
    yield system
    await _wipe(client)
    await system.shutdown()


async def _wipe(client: Any) -> None:
    keys = [k async for k in client.scan_iter(match="t-match*")]
    if keys:
        await client.delete(*keys)


async def _keys(client: Any, pattern: str) -> set[str]:
    return {k.decode() async for k in client.scan_iter(match=pattern)}


async def test_delete_match_drops_every_page_of_one_user_and_no_other(real: SystemInitializer) -> None:
    """``user_*_items:*``-style invalidation: one user's pages go from Redis and L1, other users' stay."""
    client = real.get("redis")
    calls: list[tuple[str, int]] = []
    items = Cache("t-match", system=real)

    @cached(ttl=60, key="user_{user_id}_items:{page}", cache=items)
    async def user_items(user_id: str, page: int) -> list[int]:
        calls.append((user_id, page))
        return [page]

    for user in ("ann", "bob", "annie"):
        for page in (1, 2):
            await user_items(user, page)
    await items.delete_match(f"user_{match_field('ann')}_items:*")
    left = await _keys(client, "t-match:v1:user_*")
    assert {"t-match:v1:user_bob_items:1", "t-match:v1:user_bob_items:2"} | {
        "t-match:v1:user_annie_items:1",
        "t-match:v1:user_annie_items:2",
    } == left
    assert {"t-match:v1:" + k for k in ("user_bob_items:1", "user_bob_items:2")} <= set(items.l1)
    assert not any(k.startswith("t-match:v1:user_ann_") for k in items.l1)
    await user_items("ann", 1)
    await user_items("bob", 1)
    assert ("ann", 1) == calls[-1]  # recomputed; bob's came from L1
    assert 7 == len(calls)


async def test_a_glob_character_in_a_user_id_matches_only_that_user(real: SystemInitializer) -> None:
    """A user id of ``*`` escaped by match_field drops that user's keys only, not everyone's."""
    client = real.get("redis")
    items = Cache("t-match", system=real)

    @cached(ttl=60, key="user_{user_id}_items:{page}", cache=items)
    async def user_items(user_id: str, page: int) -> int:
        return page

    for user in ("*", "a", "[ab]", "?"):
        await user_items(user, 1)
    await items.delete_match(f"user_{match_field('*')}_items:*")
    assert 3 == len(await _keys(client, "t-match:v1:user_*"))
    await items.delete_match(f"user_{match_field('[ab]')}_items:*")
    assert 2 == len(await _keys(client, "t-match:v1:user_*"))
    assert 2 == len(items.l1)


async def test_glob_escape_keeps_a_hand_written_key_literal(real: SystemInitializer) -> None:
    """Keys set by hand with glob characters in them are matched literally through glob_escape."""
    client = real.get("redis")
    cache = Cache("t-match", system=real)
    await cache.set("sess:a*b:1", 1)
    await cache.set("sess:axb:1", 2)
    await cache.delete_match(f"sess:{glob_escape('a*b')}:*")
    assert {"t-match:v1:sess:axb:1"} == await _keys(client, "t-match:v1:sess:*")
    assert [None, 2] == [await cache.get("sess:a*b:1"), await cache.get("sess:axb:1")]


async def test_another_process_drops_the_matching_keys_from_its_l1(redis_url: str) -> None:
    """The invalidation goes over pub/sub: a second system's cache on the same namespace drops the same keys."""
    systems = [SystemInitializer([RedisComponent(RedisSettings(url=redis_url))], check_interval=None) for _ in "ab"]
    for system in systems:
        await system.initialize_all()
    try:
        a, b = (Cache("t-match-pubsub", system=s) for s in systems)
        for cache in (a, b):
            await cache.get_or_set("user_1_items:1", _value(1))
            await cache.get_or_set("user_2_items:1", _value(2))
        await b.get("user_1_items:1")  # b has used Redis: it listens
        for _ in range(200):
            if b._hub.subscribed:
                break
            await _sleep()
        await a.delete_match("user_1_*")
        for _ in range(200):
            if len(b.l1) == 1:
                break
            await _sleep()
        assert ["t-match-pubsub:v1:user_2_items:1"] == list(b.l1)
    finally:
        await systems[0].get("redis").delete("t-match-pubsub:v1:user_2_items:1")
        for system in systems:
            await system.shutdown()


def _value(n: int) -> Any:
    async def compute() -> int:
        return n

    return compute


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.01)


async def test_a_bad_pattern_is_refused_before_any_io() -> None:
    """An unclosed set or a non-str pattern is a ConfigError naming the fix; the system was never started."""
    cache = Cache("t-match-bad", system=SystemInitializer([]))
    with pytest.raises(ConfigError, match=r"unclosed '\['.*\\\["):
        await cache.delete_match("user_[ab")
    with pytest.raises(ConfigError, match="must be a str"):
        await cache.delete_match(7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("user_*_items:*", "user_7_items:2", True),
        ("user_?", "user_é", False),  # ? is one byte, é two
        ("user_??", "user_é", True),
        ("[]a", "]a", False),  # [] is an empty set in Redis
        ("[^]a", "xa", True),
        ("[a-c]x", "bx", True),
        ("[c-a]x", "bx", True),  # a reversed range is swapped
        ("[^a-c]x", "bx", False),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("[\\]]", "]", True),
        ("a\\", "a\\", True),  # a trailing backslash is itself
    ],
)
def test_the_local_matcher_follows_redis(pattern: str, key: str, expected: bool) -> None:
    """The L1 matcher's answers for Redis' corner cases (checked against a real Redis below)."""
    assert expected is glob_matcher(pattern)(key)


async def test_the_local_matcher_agrees_with_a_real_redis(real: SystemInitializer) -> None:
    """For each corner case, SCAN MATCH on a real Redis and the local matcher list the same keys."""
    client = real.get("redis")
    keys = ["user_7_items:2", "user_é", "]a", "xa", "bx", "a*", "ab", "]", "a\\"]
    await client.mset({f"t-match-x:{k}": 1 for k in keys})
    patterns = ["user_*_items:*", "user_?", "user_??", "[]a", "[^]a", "[a-c]x", "[c-a]x", "[^a-c]x", "a\\*", "[\\]]"]
    patterns.append("a\\")
    try:
        for pattern in patterns:
            redis_says = {k.removeprefix("t-match-x:") for k in await _keys(client, "t-match-x:" + pattern)}
            assert ({k for k in keys if glob_matcher(pattern)(k)}, pattern) == (redis_says, pattern)
    finally:
        await client.delete(*[f"t-match-x:{k}" for k in keys])


_TEMPLATE = KeyBuilder(lambda user_id, page: None, "user_{user_id}_items:{page}")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(), st.text(), st.integers(min_value=0, max_value=99))
def test_an_escaped_field_matches_only_itself(user: str, other: str, page: int) -> None:
    """For any two user ids, the pattern made with match_field(user) matches user's keys and never other's."""
    pattern = f"user_{match_field(user)}_items:*"
    matches = glob_matcher(pattern)
    assert matches(_TEMPLATE((user, page), {}))
    assert (user == other) is matches(_TEMPLATE((other, page), {}))


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_glob_escape_matches_only_the_text_itself(text: str, other: str) -> None:
    """A glob_escape'd text as a pattern matches that text and nothing else."""
    matches = glob_matcher(glob_escape(text))
    assert matches(text)
    assert (text == other) is matches(other)
