"""Hard preemption on llama.cpp: interrupt a decode and resume it from its saved KV cache.

llama-server can write a slot's KV cache to a file and read it back
(`POST /slots/{id}?action=save|restore` with `{"filename": ...}`, enabled by starting it with
`--slot-save-path DIR`; models with sliding-window attention also need `--swa-full` for the
cache to be reusable). An interrupt therefore:

1. notes the token ids whose text already reached the client and the slot the decode runs in,
   and stops the stream from yielding anything more. The stream's events name no slot (they
   echo the requested `id_slot`, -1), so with slot saves on the adapter places every request
   itself: it claims an idle slot from `/slots` and sends its `id_slot`;
2. closes the stream (llama-server stops decoding when the client goes) and, once the slot is
   idle, saves its cache under a fresh file name.

A resume restores that file into an idle slot and asks for the rest of the output with the
prompt given as the original text followed by the emitted token ids, `cache_prompt` on and
`id_slot` set: llama-server finds the whole prompt in the restored cache and evaluates only the
last token, so greedy decoding continues exactly as if it had never stopped. Where a save or
restore fails the resume still continues from the emitted ids (the prompt is evaluated
afresh), which can differ from the uninterrupted output where two tokens nearly tie; the start
probe (pool/preemption_proof.py) only passes on a server where it is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from typing import Any

import httpx

from llama_orch.reference_impl.adapters.base import CompletionRequest, ResumeState

log = logging.getLogger(__name__)

SAVE_WAIT_S = 10.0
CLAIM_WAIT_S = 30.0  # the longest a request waits for a slot none of ours holds


class SlotCheckpoints:
    """The interrupt/resume half of the llama.cpp adapter (mixed into LlamaCppAdapter).

    Needs from the host class: `client`, `replica_id`, `_slot_of`, `_live`, `cancel()`,
    `slot_saves` (interrupts are offered at all) and `slot_dir` (where the server writes slot
    files, to delete them once restored; None when this process cannot reach that folder).
    """

    client: httpx.AsyncClient
    replica_id: str
    slot_saves: bool
    slot_dir: str | None
    _slot_of: dict[str, int]
    _live: dict[str, Any]

    def _init_checkpoints(self) -> None:
        self._emitted: dict[str, list[int]] = {}
        self._pieces: dict[str, int] = {}
        self._interrupted: set[str] = set()
        self._saves: dict[str, asyncio.Task[bool]] = {}
        self._claimed: set[int] = set()
        self._slot_ids: list[int] | None = None

    # -- bookkeeping while streaming -------------------------------------------------------
    def begin_run(self, req: CompletionRequest) -> None:
        resume = req.resume
        self._emitted[req.request_id] = list(resume.token_ids) if resume is not None else []
        self._pieces[req.request_id] = resume.tokens_done if resume is not None else 0

    def emitted(self, request_id: str, ids: list[int]) -> None:
        """One piece covering `ids` reached the client."""
        self._emitted[request_id].extend(ids)
        self._pieces[request_id] += 1

    def stopped(self, request_id: str) -> bool:
        """True once the run was interrupted: yield nothing more."""
        return request_id in self._interrupted

    def end_run(self, request_id: str) -> None:
        self._emitted.pop(request_id, None)
        self._pieces.pop(request_id, None)
        self._interrupted.discard(request_id)

    async def place(self, req: CompletionRequest) -> int:
        """The `id_slot` to send: -1 (any) without slot saves; else a claimed idle slot, the
        saved cache of a resumed request restored into it first."""
        if not self.slot_saves:
            return -1
        slot = await self._claim()
        if slot is None:
            return -1
        self._slot_of[req.request_id] = slot
        if req.resume is not None:
            await self._restore(req.resume, slot)
        return slot

    def release(self, request_id: str) -> None:
        """The request's slot is no longer ours (its stream ended, or its save is done)."""
        slot = self._slot_of.pop(request_id, None)
        self._claimed.discard(slot)  # type: ignore[arg-type]

    # -- interrupt ------------------------------------------------------------------------
    def interrupt(self, request_id: str) -> ResumeState | None:
        """Stop a running decode and save its slot (in the background); None when it cannot:
        not running here, or its slot is unknown (the server names none)."""
        slot = self._slot_of.get(request_id)
        if not self.slot_saves or slot is None or request_id in self._interrupted:
            return None
        if request_id not in self._live:  # still waiting for its first answer
            return None
        self._interrupted.add(request_id)
        filename = f"llorch-{self.replica_id}-{uuid.uuid4().hex}.bin"
        self._saves[filename] = asyncio.get_running_loop().create_task(
            self._save(request_id, slot, filename)
        )
        return ResumeState(
            tokens_done=self._pieces[request_id],
            token_ids=tuple(self._emitted[request_id]),
            engine_state={"slot_file": filename},
        )

    async def _save(self, request_id: str, slot: int, filename: str) -> bool:
        try:
            await self.cancel(request_id)  # type: ignore[attr-defined]  # closes, waits idle
            return await self._slot_action(slot, "save", filename)
        finally:
            self.release(request_id)
            self._canceled.discard(request_id)  # type: ignore[attr-defined]

    async def _slot_action(self, slot: int, action: str, filename: str) -> bool:
        try:
            resp = await self.client.post(
                f"/slots/{slot}", params={"action": action}, json={"filename": filename}
            )
        except httpx.HTTPError as exc:
            log.warning("slot %s failed: %r", action, exc, extra={"replica_id": self.replica_id})
            return False
        if resp.status_code != 200:
            log.warning(
                "slot %s refused: HTTP %s %s",
                action,
                resp.status_code,
                resp.text[:200],
                extra={"replica_id": self.replica_id},
            )
            return False
        return True

    # -- resume ---------------------------------------------------------------------------
    async def _restore(self, resume: ResumeState, slot: int) -> bool:
        """Load the saved cache into `slot` once its save finished; False when there is none
        (the resumed prompt is then evaluated afresh)."""
        filename = resume.engine_state.get("slot_file")
        save = self._saves.pop(filename, None) if isinstance(filename, str) else None
        saved = False
        if save is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                saved = await asyncio.wait_for(asyncio.shield(save), SAVE_WAIT_S)
        if not saved or not isinstance(filename, str):
            return False
        restored = await self._slot_action(slot, "restore", filename)
        self._forget_file(filename)
        return restored

    async def _claim(self) -> int | None:
        """A slot no request of ours holds, claimed; waits (bounded) while every slot is held,
        e.g. by an interrupted decode whose cache is still being saved. None when the server
        lists no slots (then the request goes to any slot, unplaced)."""
        if self._slot_ids is None:
            try:
                resp = await self.client.get("/slots")
                slots = resp.json() if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                slots = None
            if not isinstance(slots, list) or not slots:
                return None
            self._slot_ids = [s.get("id", i) for i, s in enumerate(slots)]
        deadline = asyncio.get_running_loop().time() + CLAIM_WAIT_S
        while True:
            free = [sid for sid in self._slot_ids if sid not in self._claimed]
            if free:
                self._claimed.add(free[0])
                return free[0]
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.01)

    def _forget_file(self, filename: str) -> None:
        if self.slot_dir:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.slot_dir, filename))

    @staticmethod
    def placed_body(body: dict[str, Any], req: CompletionRequest, slot: int) -> dict[str, Any]:
        """The `/completion` body in `slot`, continuing `req` from its resume state if any."""
        body["id_slot"] = slot
        resume = req.resume
        if resume is None:
            return body
        body["prompt"] = [req.prompt, *resume.token_ids]
        body["n_predict"] = max(0, req.max_tokens - len(resume.token_ids))
        body["cache_prompt"] = True
        return body
