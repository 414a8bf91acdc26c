"""Phase 1's state: the archive of cells, one exploration from a cell, and the adaptive downscaling.

``Archive`` holds, for every cell found, the best trajectory that reaches it (its score, length and
actions), the emulator state at its end, and the counts its selection weight is made of; ``done``
keeps the best trajectory that ended the episode (a goal reached, a life lost), a cell never returned
to. ``explore`` returns to one cell and explores from it; its result, a record, says which cells it saw
and which it reached better than the archive does. The archive changes only in ``apply``, which takes
the records of every process in the same order, so all processes keep identical archives.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Hashable

import numpy as np
import torch
from torch import Tensor

from zoo.go_explore.data import Game
from zoo.go_explore.objective import count_weight, downscale, half_frame, is_better, level_factor, repeated_random_actions

Key = Hashable  # a tuple of ints (a domain cell) or bytes (a downscaled frame)


class CellFunction:
    """The cell of the game's current state: its domain-knowledge cell, or its grey frame downscaled to
    the current parameters (w, h, d); before any parameters are chosen every frame is one cell, as in the
    official code's first iterations."""

    def __init__(self, kind: str, params: tuple[int, int, int] | None = None) -> None:
        self.kind, self.params = kind, params

    def __call__(self, game: Game) -> tuple[Key, np.ndarray | None]:
        """(key, the half-resolution frame the key was made from, or None for domain cells)."""
        if self.kind == "domain":
            return game.cell(), None
        frame = half_frame(game.frame())
        return self.of_frame(frame), frame

    def of_frame(self, frame: np.ndarray) -> Key:
        return b"" if self.params is None else downscale(frame, *self.params).tobytes()


class Archive:
    def __init__(self, fields: tuple[str, ...] = ()) -> None:
        self.fields = fields  # names of a domain cell's entries (level, room, x, y, …), for the weights
        self.index: dict[Key, int] = {}
        self.keys: list[Key] = []
        self.score: list[float] = []
        self.length: list[int] = []
        self.seen: list[int] = []
        self.chosen: list[int] = []
        self.since_new: list[int] = []
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.frames: list[np.ndarray | None] = []
        self.done_score, self.done_length = -math.inf, math.inf
        self.done_actions = np.zeros(0, np.uint8)
        self.rooms: set[int] = set()
        self._rows, self._n_rows = np.zeros((0, len(fields)), np.int64), 0  # the domain keys as rows (``rows``)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: Key, score: float, length: int, state: np.ndarray, actions: np.ndarray,
            frame: np.ndarray | None) -> int:
        """Put a trajectory into the cell ``key`` (new, or replacing the cell's); returns the cell's index."""
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
            for counts in (self.seen, self.chosen, self.since_new):
                counts.append(0)
            for values in (self.score, self.length, self.states, self.actions, self.frames):
                values.append(None)
        self.score[i], self.length[i], self.states[i], self.actions[i], self.frames[i] = (
            float(score), int(length), state, actions, frame)
        return i

    # -- selection ---------------------------------------------------------------------------

    def rows(self) -> np.ndarray:
        """The domain cells' keys as an [n, fields] integer array. Cells are only appended, so the array grows
        (its capacity doubling) rather than being rebuilt."""
        n, done = len(self.keys), self._n_rows
        if done < n:
            if len(self._rows) < n:
                grown = np.zeros((max(n, 2 * len(self._rows)), len(self.fields)), np.int64)
                grown[:done] = self._rows[:done]
                self._rows = grown
            self._rows[done:n] = np.array(self.keys[done:n], dtype=np.int64).reshape(n - done, len(self.fields))
            self._n_rows = n
        return self._rows[:n]

    def counts(self, values: list[int]) -> Tensor:
        return torch.from_numpy(np.fromiter(values, np.int64, len(values)))

    def weights(self, seen=(1.0, 0.5), chosen=(0.0, 0.5), since_new=(0.0, 0.5), horiz: float = 0.0,
                vert: float = 0.0, high_keys: float = 0.0, low_level: float = 1.0) -> Tensor:
        """W(c) = Σ_a w_a / (C_a + 1)^{p_a} + neighbour terms, times λ^{L_max − L(c)} (the official
        WeightedSelector). Neighbour terms, for domain cells with x and y: ``horiz`` (``vert``) for each of
        the two horizontal (vertical) neighbours that is not in the archive, counting only neighbours within
        the range of x (y) seen so far; ``high_keys`` when no cell at the same place holds more keys.
        Array operations over every cell: the cost per selection grows with the archive in C, not Python."""
        w = count_weight(self.counts(self.seen), *seen)
        if chosen[0]:
            w = w + count_weight(self.counts(self.chosen), *chosen)
        if since_new[0]:
            w = w + count_weight(self.counts(self.since_new), *since_new)
        if (horiz or vert or high_keys) and {"x", "y"} <= set(self.fields):
            w = w + torch.from_numpy(neighbour_weights(self.rows(), self.fields, horiz, vert, high_keys))
        if low_level != 1.0 and "level" in self.fields:
            level = torch.from_numpy(self.rows()[:, self.fields.index("level")].copy())
            w = w * level_factor(level, low_level)
        return w

    # -- the best trajectory -----------------------------------------------------------------

    def best(self) -> tuple[float, int, np.ndarray]:
        """(score, length, actions) of the best trajectory found: the highest score, then the shortest,
        over every cell and the best trajectory that ended the episode (on a tie, the ended episode's, then
        the earliest cell's)."""
        score, length, actions = self.done_score, self.done_length, self.done_actions
        if len(self):
            scores = np.fromiter(self.score, np.float64, len(self))
            top = np.flatnonzero(scores == scores.max())
            i = int(top[np.argmin(np.fromiter(self.length, np.int64, len(self))[top])])
            if is_better(self.score[i], self.length[i], score, length):
                score, length, actions = self.score[i], self.length[i], self.actions[i]
        return score, int(length), actions

    # -- merging explorations ----------------------------------------------------------------

    def apply(self, records: list[dict[str, Any]], reset_cell_on_update: bool = True) -> tuple[int, int]:
        """Merge exploration records (every process's, in the same order) with the official update:
        the start cell counts one more choice, every distinct cell an exploration saw one more sighting,
        and a reached cell takes the trajectory when it is new or better (``is_better``); the start cell's
        "chosen since new" count restarts when it led to a new or better cell. With ``reset_cell_on_update``
        the counts of a cell whose trajectory changed restart at 0. Returns (new cells, improved cells)."""
        updated: set[Key] = set()
        n_new = n_better = 0
        for rec in records:
            start = self.index[rec["start_key"]]
            self.chosen[start] += 1
            self.since_new[start] += 1
            for key in rec["seen"]:
                i = self.index.get(key)
                if i is not None:
                    self.seen[i] += 1
            for key, score, length, state, actions, frame in rec["candidates"]:
                i = self.index.get(key)
                if i is None or is_better(score, length, self.score[i], self.length[i]):
                    n_new, n_better = n_new + (i is None), n_better + (i is not None)
                    self.add(key, score, length, state, actions, frame)
                    updated.add(key)
                    self.since_new[start] = 0
            if rec["done"] is not None:
                score, length, actions = rec["done"]
                if is_better(score, length, self.done_score, self.done_length):
                    self.done_score, self.done_length, self.done_actions = float(score), int(length), actions
            self.rooms.update(rec["rooms"])
        if reset_cell_on_update:
            for key in updated:
                i = self.index[key]
                self.seen[i] = self.chosen[i] = self.since_new[i] = 0
        return n_new, n_better

    def rekey(self, key_of: Callable[[np.ndarray], Key], reset_cell_on_update: bool = True) -> None:
        """Re-file every cell under the key its frame has now (new downscaling parameters). Cells that fall
        together keep the better trajectory (``is_better``); with ``reset_cell_on_update`` the kept cell
        keeps its own counts, else the counts add up, as in the official recomputation."""
        new = Archive(self.fields)
        new.done_score, new.done_length, new.done_actions, new.rooms = (
            self.done_score, self.done_length, self.done_actions, self.rooms)
        for i in range(len(self)):
            key = key_of(self.frames[i])
            j = new.index.get(key)
            counts = (self.seen[i], self.chosen[i], self.since_new[i])
            before = (0, 0, 0) if j is None else (new.seen[j], new.chosen[j], new.since_new[j])
            if j is None or is_better(self.score[i], self.length[i], new.score[j], new.length[j]):
                j = new.add(key, self.score[i], self.length[i], self.states[i], self.actions[i], self.frames[i])
                after = counts
            else:
                after = before
            if not reset_cell_on_update:
                after = tuple(a + b for a, b in zip(counts, before))
            new.seen[j], new.chosen[j], new.since_new[j] = after
        self.__dict__.update(new.__dict__)

    # -- checkpoint ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The archive as tensors and plain values (read back with ``torch.load(weights_only=True)``)."""
        def flat(arrays: list[np.ndarray]) -> tuple[Tensor, Tensor]:
            offsets = np.cumsum([0] + [len(a) for a in arrays])
            data = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
            return torch.from_numpy(data.astype(np.uint8)), torch.from_numpy(offsets.astype(np.int64))

        downscaled = bool(self.keys) and isinstance(self.keys[0], bytes)
        if downscaled:
            keys = torch.from_numpy(np.frombuffer(b"".join(self.keys), np.uint8).reshape(len(self), -1).copy())
        else:
            keys = torch.tensor(self.keys, dtype=torch.long).reshape(len(self), -1)
        states, state_offsets = flat(self.states)
        actions, action_offsets = flat(self.actions)
        frames = [f for f in self.frames if f is not None]
        return {
            "fields": list(self.fields), "downscaled": downscaled, "keys": keys,
            "score": torch.tensor(self.score, dtype=torch.float64), "length": torch.tensor(self.length),
            "seen": torch.tensor(self.seen), "chosen": torch.tensor(self.chosen), "since_new": torch.tensor(self.since_new),
            "states": states, "state_offsets": state_offsets, "actions": actions, "action_offsets": action_offsets,
            "frames": torch.from_numpy(np.stack(frames)) if len(frames) == len(self) and frames else torch.zeros(0),
            "done_score": self.done_score, "done_length": self.done_length,
            "done_actions": torch.from_numpy(self.done_actions.astype(np.uint8)), "rooms": sorted(self.rooms),
        }

    @staticmethod
    def check_state(state: dict[str, Any], where: str, n_actions: int | None = None) -> None:
        """A saved archive whose parts agree: one key, score, length and count per cell, offsets that cut
        the states and actions into one piece per cell, actions below ``n_actions``; else an error naming
        ``where`` (the checkpoint file)."""
        from zoo.errors import CheckpointError

        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"{where}: the Go-Explore archive is inconsistent ({what}); the file is corrupted, "
                                   "or was not written by this version of the zoo")

        names = ("fields", "downscaled", "keys", "score", "length", "seen", "chosen", "since_new", "states",
                 "state_offsets", "actions", "action_offsets", "frames", "done_score", "done_length", "done_actions",
                 "rooms")
        missing = [k for k in names if k not in state]
        if missing:
            raise bad(f"no {', '.join(missing)}")
        n = len(state["score"])
        counts = {k: len(state[k]) for k in ("keys", "length", "seen", "chosen", "since_new")}
        if any(c != n for c in counts.values()):
            raise bad(f"{n} scores but " + ", ".join(f"{c} {k}" for k, c in counts.items() if c != n))
        if state["frames"].numel() and len(state["frames"]) != n:
            raise bad(f"{n} cells but {len(state['frames'])} frames")
        for data, offsets in (("states", "state_offsets"), ("actions", "action_offsets")):
            o = state[offsets]
            if (o.dim() != 1 or len(o) != n + 1 or int(o[0]) != 0 or int(o[-1]) != len(state[data])
                    or bool((o[1:] < o[:-1]).any())):
                raise bad(f"{offsets} do not cut the {len(state[data])} bytes of {data} into {n} pieces")
        for name in ("actions", "done_actions"):
            if n_actions is not None and state[name].numel() and int(state[name].max()) >= n_actions:
                raise bad(f"{name} hold the action {int(state[name].max())}; the game has {n_actions} actions")

    def load_state_dict(self, state: dict[str, Any], where: str = "the checkpoint", n_actions: int | None = None) -> None:
        self.check_state(state, where, n_actions)
        self.__init__(tuple(state["fields"]))
        keys = state["keys"].numpy()
        n = len(state["score"])
        frames = state["frames"].numpy() if state["frames"].numel() else [None] * n
        so, ao = state["state_offsets"].numpy(), state["action_offsets"].numpy()
        states, actions = state["states"].numpy(), state["actions"].numpy()
        for i in range(n):
            key = keys[i].tobytes() if state["downscaled"] else tuple(int(v) for v in keys[i])
            self.add(key, float(state["score"][i]), int(state["length"][i]), states[so[i]:so[i + 1]].copy(),
                     actions[ao[i]:ao[i + 1]].copy(), None if frames[i] is None else frames[i].copy())
            self.seen[i], self.chosen[i], self.since_new[i] = (int(state[k][i]) for k in ("seen", "chosen", "since_new"))
        self.done_score, self.done_length = float(state["done_score"]), float(state["done_length"])
        self.done_actions = state["done_actions"].numpy().copy()
        self.rooms = set(int(r) for r in state["rooms"])


def neighbour_weights(rows: np.ndarray, fields: tuple[str, ...], horiz: float, vert: float,
                      high_keys: float) -> np.ndarray:
    """The neighbour terms of ``Archive.weights`` for domain cells given as rows of their fields: ``horiz``
    (``vert``) for each missing neighbour at x ± 1 (y ± 1) within the range of x (y) seen, and ``high_keys``
    where no cell at the same place (every field but ``keys``) holds more keys."""
    n = len(rows)
    out = np.zeros(n, np.float64)
    if n == 0:
        return out
    lo, hi = rows.min(0), rows.max(0)
    span = hi - lo + 1
    if float(np.prod(span.astype(np.float64))) >= 2.0 ** 62:  # too wide to number every place: one by one
        return np.array(_neighbour_weights_by_cell(rows, fields, horiz, vert, high_keys))
    radix = np.concatenate([[1], np.cumprod(span[:-1])]).astype(np.int64)

    def number(r: np.ndarray) -> np.ndarray:  # a distinct integer per key within [lo, hi]
        return (r - lo) @ radix

    ids = number(rows)
    if float(np.prod(span.astype(np.float64))) <= 2 ** 24:  # a table of every place: one lookup per key
        table = np.zeros(int(np.prod(span)), bool)
        table[ids] = True

        def found(x: np.ndarray) -> np.ndarray:
            return table[x]
    else:
        known = np.sort(ids)

        def found(x: np.ndarray) -> np.ndarray:
            return known[np.searchsorted(known, x).clip(max=n - 1)] == x
    fx, fy = fields.index("x"), fields.index("y")
    for f, weight in ((fx, horiz), (fy, vert)):
        if not weight:
            continue
        stride = radix[f]
        for step in (-1, 1):
            inside = (rows[:, f] + step >= lo[f]) & (rows[:, f] + step <= hi[f])
            out += weight * (inside & ~found(np.where(inside, ids + step * stride, ids)))
    if high_keys and "keys" in fields:
        fk = fields.index("keys")
        _, group = np.unique(ids - (rows[:, fk] - lo[fk]) * radix[fk], return_inverse=True)  # the place: keys at lo
        most = np.full(group.max() + 1, np.iinfo(np.int64).min)
        np.maximum.at(most, group, rows[:, fk])
        out += high_keys * (most[group] <= rows[:, fk])
    return out


def _neighbour_weights_by_cell(rows: np.ndarray, fields: tuple[str, ...], horiz: float, vert: float,
                               high_keys: float) -> list[float]:
    """``neighbour_weights`` cell by cell, for keys whose ranges are too wide to number."""
    keys = [tuple(int(v) for v in r) for r in rows]
    fx, fy = fields.index("x"), fields.index("y")
    known = set(keys)
    ranges = {f: (int(rows[:, f].min()), int(rows[:, f].max())) for f in (fx, fy)}
    fk = fields.index("keys") if "keys" in fields else None
    most_keys: dict[tuple, int] = {}
    if fk is not None:
        for k in keys:
            place = k[:fk] + k[fk + 1:]
            most_keys[place] = max(most_keys.get(place, -1), k[fk])
    out = []
    for k in keys:
        w = 0.0
        for f, weight in ((fx, horiz), (fy, vert)):
            if weight:
                for step in (-1, 1):
                    v = k[f] + step
                    if ranges[f][0] <= v <= ranges[f][1] and k[:f] + (v,) + k[f + 1:] not in known:
                        w += weight
        if fk is not None and high_keys and most_keys[k[:fk] + k[fk + 1:]] <= k[fk]:
            w += high_keys
        out.append(w)
    return out


def explore(game: Game, archive: Archive, start: int, rng: np.random.Generator, cell_of: CellFunction,
            explore_steps: int, mean_repeat: float, frame_prob: float = 0.0) -> dict[str, Any]:
    """Return to cell ``start`` (restore its state) and explore from it with repeated random actions, for
    ``explore_steps`` steps or until the episode ends. The record lists the distinct cells seen and, for
    every cell reached better than the archive has it, the best way this exploration reached it (with its
    state, taken only then); ``done`` is the trajectory when the episode ended. ``frames`` samples the
    half-resolution frames (probability ``frame_prob`` per step) that the downscaling is chosen from."""
    game.set_state(archive.states[start])
    prefix = archive.actions[start]
    score, length = archive.score[start], archive.length[start]
    actions = repeated_random_actions(explore_steps, game.n_actions, mean_repeat, rng)
    seen: dict[Key, None] = {archive.keys[start]: None}
    best: dict[Key, tuple] = {}
    rooms: set[int] = set()
    frames, done, steps = [], None, 0
    sample = rng.random(explore_steps) < frame_prob if frame_prob > 0 else None
    for t, a in enumerate(actions):
        reward, terminated, truncated = game.step(int(a))
        score += reward
        length += 1
        steps += 1
        if terminated or truncated:
            done = (score, length, np.concatenate([prefix, actions[:t + 1].astype(np.uint8)]))
            break
        key, frame = cell_of(game)
        seen[key] = None
        room = game.room()
        if room >= 0:
            rooms.add(room)
        if sample is not None and sample[t]:
            frames.append(frame)
        i = archive.index.get(key)
        if i is not None and not is_better(score, length, archive.score[i], archive.length[i]):
            continue
        if key in best and not is_better(score, length, best[key][1], best[key][2]):
            continue
        best[key] = (key, score, length, game.get_state(), t, frame)
    candidates = [(key, score, length, state, np.concatenate([prefix, actions[:t + 1].astype(np.uint8)]), frame)
                  for key, score, length, state, t, frame in best.values()]
    return {"start_key": archive.keys[start], "seen": list(seen), "candidates": candidates, "done": done,
            "frames": frames, "rooms": rooms, "steps": steps}


class Downscaling:
    """The adaptive downscaling's state: the parameters (w, h, d) in use (None: one cell for all frames,
    until the first choice), the sample of recent frames the next choice is made from, and when it is due."""

    def __init__(self, max_frames: int, first: int) -> None:
        self.params: tuple[int, int, int] | None = None
        self.max_frames = max_frames
        self.frames: dict[bytes, np.ndarray] = {}  # distinct recent frames, oldest first
        self.next_at = first

    def add(self, frames: list[np.ndarray]) -> None:
        for f in frames:
            key = f.tobytes()
            if key in self.frames:
                continue
            if len(self.frames) >= self.max_frames:  # the official RotatingSet drops the oldest
                del self.frames[next(iter(self.frames))]
            self.frames[key] = f

    def sample(self) -> np.ndarray:
        return np.stack(list(self.frames.values()))

    def state_dict(self) -> dict[str, Any]:
        return {"params": list(self.params) if self.params else [], "next_at": self.next_at,
                "frames": torch.from_numpy(self.sample()) if self.frames else torch.zeros(0, dtype=torch.uint8)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.params = tuple(int(v) for v in state["params"]) or None
        self.next_at = int(state["next_at"])
        self.frames = {}
        self.add(list(state["frames"].numpy()))
