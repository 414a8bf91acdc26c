"""The deceptive hard maze of novelty search (Lehman & Stanley, 2011), as a gymnasium environment.

A wheeled robot of radius 8 starts at the bottom left of a 200×200 maze of 13 walls and has 400
steps (``steps``) to reach the goal at the top left. The reward, given at the last step, is minus the final
distance to the goal: a cul-de-sac that points straight at the goal traps reward-driven search.
Observations follow the official Deep GA maze (its ``maze.h``): a bias input, six rangefinders
(−90°, −45°, 0°, 45°, 90°, 180° around the heading, range 100, scaled to [0, 1]) and four pie-slice
radars that fire toward the goal. The two actions set the targets of angular velocity and speed,
approached by at most 0.2 per step; a move into a wall is refused. ``info["bc"]`` is the robot's
(x, y), the behaviour characterisation of novelty search.

Registered as ``zoo/HardMaze-v0`` when zoo.deep_ga is imported.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

# the official hard_maze.txt: start (36, 184) heading 0°, goal (31, 20), then the walls (x1 y1 x2 y2)
START, GOAL = (36.0, 184.0), (31.0, 20.0)
WALLS = np.array([[41, 5, 3, 8], [3, 8, 4, 49], [4, 49, 57, 53], [4, 49, 7, 202], [7, 202, 195, 198],
                  [195, 198, 186, 8], [186, 8, 39, 5], [56, 54, 56, 157], [57, 106, 158, 162],
                  [77, 201, 108, 164], [6, 80, 33, 121], [192, 146, 87, 91], [56, 55, 133, 30]], dtype=np.float64)
RANGEFINDERS = [math.radians(a) for a in (-90.0, -45.0, 0.0, 45.0, 90.0, -180.0)]
RADAR_STARTS = (315.0, 45.0, 135.0, 225.0)  # each slice spans 90°
RADIUS, RANGE, STEPS, GOAL_RADIUS = 8.0, 100.0, 400, 10.0


WALL_LIST = [tuple(float(v) for v in w) for w in WALLS]


def segment_distance(x: float, y: float) -> float:
    """Distance from (x, y) to the nearest wall segment (plain floats: a step is a few hundred of these)."""
    best = math.inf
    for ax, ay, bx, by in WALL_LIST:
        abx, aby = bx - ax, by - ay
        u = ((x - ax) * abx + (y - ay) * aby) / (abx * abx + aby * aby)
        if u < 0 or u > 1:
            d = min(math.hypot(x - ax, y - ay), math.hypot(x - bx, y - by))
        else:
            d = math.hypot(x - ax - u * abx, y - ay - u * aby)
        best = min(best, d)
    return best


def rangefinders(x: float, y: float, heading_deg: float) -> list[float]:
    """Distance to the nearest wall along each rangefinder ray (RANGE where none is hit)."""
    out = []
    for angle in RANGEFINDERS:
        a = angle + math.radians(heading_deg)
        dcx, dcy = RANGE * math.cos(a), RANGE * math.sin(a)  # the ray from (x, y)
        best = RANGE
        for ax, ay, bx, by in WALL_LIST:
            bax, bay = bx - ax, by - ay
            denom = bax * dcy - bay * dcx
            if denom == 0:
                continue
            acx, acy = ax - x, ay - y
            r = (acy * dcx - acx * dcy) / denom
            s = (acy * bax - acx * bay) / denom
            if 0 < r < 1 and 0 < s < 1:
                best = min(best, math.hypot(acx + r * bax, acy + r * bay))
        out.append(best)
    return out


def clip(v: float, bound: float) -> float:
    return min(max(v, -bound), bound)


class HardMaze(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, steps: int = STEPS, render_mode: str | None = None) -> None:
        if steps < 1:
            raise ValueError(f"the maze's episodes need at least one step, got steps={steps}")
        self.steps, self.render_mode = steps, render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (11,), np.float32)
        self.action_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float32)

    def _obs(self) -> np.ndarray:
        x, y = self.location
        ranges = [r / RANGE for r in rangefinders(x, y, self.heading)]
        angle = (math.degrees(math.atan2(GOAL[1] - y, GOAL[0] - x)) - self.heading) % 360.0
        radar = [float((angle - start) % 360.0 < 90.0) for start in RADAR_STARTS]
        return np.array([1.0, *ranges, *radar], dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        x, y = self.location
        distance = math.hypot(GOAL[0] - x, GOAL[1] - y)
        return {"bc": np.array([x, y], dtype=np.float32), "distance": distance, "solved": distance < GOAL_RADIUS}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # the maze is deterministic: the seed changes nothing
        self.location = START
        self.heading, self.speed, self.ang_vel, self.t = 0.0, 0.0, 0.0, 0
        return self._obs(), self._info()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(2)
        o1, o2 = (min(max(float(v) + 0.5, 0.0), 1.0) for v in a)
        self.ang_vel += clip((o1 - 0.5) * 6.0 - self.ang_vel, 0.2)
        self.speed += clip((o2 - 0.5) * 6.0 - self.speed, 0.2)
        self.ang_vel, self.speed = clip(self.ang_vel, 3.0), clip(self.speed, 3.0)
        rad = math.radians(self.heading)
        x, y = self.location[0] + math.cos(rad) * self.speed, self.location[1] + math.sin(rad) * self.speed
        self.heading = (self.heading + self.ang_vel) % 360.0
        if segment_distance(x, y) >= RADIUS:
            self.location = (x, y)
        self.t += 1
        info = self._info()
        truncated = self.t >= self.steps
        reward = -info["distance"] if truncated else 0.0
        return self._obs(), reward, False, truncated, info

    def render(self) -> np.ndarray:
        """A 200×200 picture of the maze, the goal (green) and the robot (red)."""
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (205, 210), "white")
        draw = ImageDraw.Draw(image)
        for x1, y1, x2, y2 in WALLS:
            draw.line([(x1, y1), (x2, y2)], fill="black", width=2)
        gx, gy = GOAL
        draw.ellipse([gx - GOAL_RADIUS, gy - GOAL_RADIUS, gx + GOAL_RADIUS, gy + GOAL_RADIUS], outline="green", width=2)
        x, y = self.location
        draw.ellipse([x - RADIUS, y - RADIUS, x + RADIUS, y + RADIUS], fill="red")
        return np.asarray(image)


gym.register(id="zoo/HardMaze-v0", entry_point="zoo.deep_ga.data:HardMaze")
