#!/usr/bin/env bash
# The paper's 1M-step on-policy comparison, one run at a time, each line of the JSONL committed as it
# lands, so that it can be stopped between runs and continued later with the same command:
#
#     scripts/bench/mdpo_1m.sh hopper_1m docs/mdpo/hopper_1m.jsonl --not-after 14:35 --end-by 14:44
#     scripts/bench/mdpo_1m.sh halfcheetah_1m docs/mdpo/halfcheetah_1m.jsonl
#
# TASK and FILE as scripts/bench/mdpo.py's --tasks and --jsonl; seeds 0-4 unless --seeds is given; the
# other options go to mdpo.py (--not-after, --end-by: no run starts that late). Python is $PYTHON, or
# python. Needs gymnasium[mujoco] and stable-baselines3.
set -u
task=$1 file=$2
shift 2
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}

commit() {  # the file's new lines, named by its last one
    git diff --quiet HEAD -- "$file" 2>/dev/null && git ls-files --error-unmatch "$file" >/dev/null 2>&1 && return
    [ -s "$file" ] || return
    local line
    line=$(tail -n 1 "$file" | "$PY" -c 'import json, sys
r = json.loads(sys.stdin.read())
print("%s seed %d: greedy return %.1f ± %.1f at %d steps" % (r["method"], r["seed"], r["return_mean"], r["return_std"], r["env_steps"]))')
    git add "$file" && git commit -q -m "MDPO 1M-step bench, $task: $line" -- "$file"
}

commit
while :; do
    "$PY" scripts/bench/mdpo.py --tasks "$task" --seeds 0 1 2 3 4 --jsonl "$file" --max-runs 1 "$@"
    status=$?
    [ "$status" -eq 0 ] || break
    commit
done
[ "$status" -eq 3 ] && exit 0 || exit "$status"
