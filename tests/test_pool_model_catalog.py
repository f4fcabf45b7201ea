"""The model catalog (pool/model_catalog.py): immutable bindings, resolution, lifecycle moves."""

from __future__ import annotations

import pytest

from llama_orch.reference_impl.pool.model_catalog import (
    TRANSITIONS,
    CatalogError,
    Entry,
    ModelCatalog,
    ModelState,
)

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def entry(model_id: str, digest: str, *tags: str, source: str | None = "https://r.example/o/m"):
    return Entry(model_id, digest, source, list(tags), [], [], None, "llamacpp", 0)


@pytest.mark.req("ORCH-3062", "ORCH-3068")
def test_a_tag_resolves_to_the_same_digest_every_time() -> None:
    cat = ModelCatalog()
    cat.add(entry("m1", A, "v1", "stable"))
    for _ in range(3):
        assert cat.resolve("r.example/o/m:v1").digest == A
        assert cat.resolve("r.example/o/m:stable").model_id == "m1"
    assert cat.resolve(A).model_id == "m1" and cat.resolve("m1").digest == A
    with pytest.raises(CatalogError) as exc:  # the tag cannot move to another digest
        cat.add(entry("m2", B, "v1"))
    assert exc.value.status == 409
    assert cat.resolve("r.example/o/m:v1").digest == A
    cat.add(entry("m2", B, "v2"))  # another tag of the repository is free
    assert cat.resolve("r.example/o/m:v2").digest == B
    assert cat.resolve("r.example/o/other:v1") is None


@pytest.mark.req("ORCH-3062")
def test_ids_and_digests_bind_once_and_a_repeat_adds_tags() -> None:
    cat = ModelCatalog()
    cat.add(entry("m1", A, "v1"))
    for rival in (entry("m1", B), entry("m9", A)):
        with pytest.raises(CatalogError) as exc:
            cat.add(rival)
        assert exc.value.status == 409
    again = cat.add(entry("m1", A, "v1", "latest"))
    assert again.tags == ["v1", "latest"] and len(cat) == 1
    assert cat.resolve("r.example/o/m:latest").model_id == "m1"
    with pytest.raises(CatalogError) as exc:
        cat.add(entry("m3", "sha256:short"))
    assert (exc.value.status, exc.value.field) == (400, "digest")
    # Without a source, tags are scoped by the entry id.
    cat.add(entry("local", B, "v1", source=None))
    assert cat.resolve("local:v1").digest == B


@pytest.mark.req("ORCH-3069")
def test_lifecycle_moves_follow_the_table() -> None:
    cat = ModelCatalog()
    cat.add(entry("m1", A))
    assert cat.get("m1").state is ModelState.DRAFT
    path = [ModelState.ACTIVE, ModelState.CANARY, ModelState.DEPRECATED, ModelState.RETIRED]
    for state in path:
        assert cat.move("m1", state)[1] is state
    assert TRANSITIONS[ModelState.RETIRED] == frozenset()
    with pytest.raises(CatalogError) as exc:
        cat.move("m1", ModelState.ACTIVE)
    assert exc.value.status == 400 and "Retired -> Active" in exc.value.message
    assert cat.move("m1", ModelState.RETIRED) == (ModelState.RETIRED, ModelState.RETIRED)
    with pytest.raises(CatalogError) as exc:
        cat.move("nope", ModelState.ACTIVE)
    assert exc.value.status == 404
    assert all(ModelState.DRAFT not in targets for targets in TRANSITIONS.values())


def test_a_full_catalog_drops_the_oldest_retired_entry_first() -> None:
    cat = ModelCatalog(max_entries=2)
    cat.add(entry("m1", A, "v1"))
    cat.add(entry("m2", B, source="https://r.example/o/n"))
    with pytest.raises(CatalogError):
        cat.add(entry("m3", "sha256:" + "c" * 64, source="https://r.example/o/p"))
    cat.move("m1", ModelState.RETIRED)
    cat.add(entry("m3", "sha256:" + "c" * 64, source="https://r.example/o/p"))
    assert cat.get("m1") is None and cat.resolve("r.example/o/m:v1") is None and len(cat) == 2
