#!/usr/bin/env bash
# The paper's 1M-step on-policy comparison, one run at a time, each committed as it lands, so that it
# can be stopped between runs and continued with the same command:
#
#     scripts/bench/mdpo_1m.sh hopper_1m docs/mdpo/hopper_1m.jsonl 14:35 [seeds...]
#
# TASK and FILE as scripts/bench/mdpo.py's --tasks and --jsonl; no run starts past HH:MM (today's local
# time; "" for none); seeds 0-4 unless given. Needs gymnasium[mujoco] and stable-baselines3.
set -u
task=$1 file=$2 not_after=$3
shift 3
seeds=("${@:-0 1 2 3 4}")
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
while :; do
    "$PY" scripts/bench/mdpo.py --tasks "$task" --seeds ${seeds[@]} --jsonl "$file" --max-runs 1 \
        ${not_after:+--not-after "$not_after"}
    status=$?
    [ "$status" -eq 0 ] || break
    line=$(tail -n 1 "$file" | "$PY" -c 'import json, sys
r = json.loads(sys.stdin.read())
print("%s seed %d: greedy return %.1f ± %.1f at %d steps" % (r["method"], r["seed"], r["return_mean"], r["return_std"], r["env_steps"]))')
    git add "$file" && git commit -q -m "MDPO 1M-step bench, $task: $line" -- "$file"
done
[ "$status" -eq 3 ] && exit 0 || exit "$status"
