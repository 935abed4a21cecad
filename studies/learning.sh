#!/usr/bin/env bash
# Learning sweep: the four PWM variants (baseline, flow_wm, flow_policy, full_flow) and SAC, seeds
# 0 1 2, on each task given (default: ant), then studies/learning_report.py on them.
#
#   bash studies/learning.sh                       # ant
#   bash studies/learning.sh ant anymal humanoid
#   FRAMES=20000 RUNS=/tmp/smoke bash studies/learning.sh ant   # quick smoke sweep
#   SEEDS="0 2" bash studies/learning.sh & SEEDS=1 bash studies/learning.sh &  # 2 at a time
#
# Resumable: rerun the same command. A run whose learning_curve.png exists (written at the very
# end of a run) is skipped; an interrupted one resumes from its latest checkpoint in its run
# directory RUNS/<task>/<variant>/seed<k>. A finished run is not extended when FRAMES grows: use
# a new RUNS for a longer sweep. Runs go one after the other, each with threads=1.
# examples/sac_baseline.py takes the same overrides (env, seed, threads, collector.total_frames,
# hydra.run.dir) and is skipped by the same learning_curve.png rule.
#
# Environment:
#   FRAMES    env frames per run (collector.total_frames), default 1000000
#   SEEDS     seeds to run, default "0 1 2"
#   VARIANTS  what to run, default "baseline flow_wm flow_policy full_flow sac"
#   PWM_ARGS  extra overrides of every PWM run, e.g. "algo.wm_updates_per_iter=2" (default none)
#   SAC_ARGS  extra overrides of every SAC run, e.g. "sac.utd_ratio=0.5" (default none)
#   RUNS      root of the run directories, default runs/learning
#   OUT       report folder (curves, table), default docs/results_generated
#   PYTHON    interpreter, default python
set -euo pipefail
cd "$(dirname "$0")/.."

FRAMES="${FRAMES:-1000000}"
RUNS="${RUNS:-runs/learning}"
OUT="${OUT:-docs/results_generated}"
PYTHON="${PYTHON:-python}"
read -r -a seeds <<<"${SEEDS:-0 1 2}"
read -r -a variants <<<"${VARIANTS:-baseline flow_wm flow_policy full_flow sac}"
read -r -a pwm_args <<<"${PWM_ARGS:-}"
read -r -a sac_args <<<"${SAC_ARGS:-}"
tasks=("${@:-ant}")
for variant in "${variants[@]}"; do
    case $variant in
        baseline | flow_wm | flow_policy | full_flow | sac) ;;
        *)
            echo "VARIANTS: unknown variant '$variant' (allowed: baseline flow_wm flow_policy" \
                "full_flow sac)" >&2
            exit 2
            ;;
    esac
done

# train SCRIPT RUN_DIR OVERRIDE...: runs unless the run directory holds a finished run.
train() {
    local script=$1 dir=$2
    shift 2
    if [[ -f "$dir/learning_curve.png" ]]; then
        echo "== skip $dir (finished)"
        return
    fi
    echo "== $script $* -> $dir"
    "$PYTHON" "$script" "$@" threads=1 collector.total_frames="$FRAMES" hydra.run.dir="$dir"
}

report_dirs=()
for task in "${tasks[@]}"; do
    # Seeds outermost: an interrupted sweep still has every variant on the same seeds.
    for seed in "${seeds[@]}"; do
        for variant in "${variants[@]}"; do
            case $variant in
                sac)
                    train examples/sac_baseline.py "$RUNS/$task/sac/seed$seed" \
                        env="$task" seed="$seed" "${sac_args[@]}"
                    ;;
                *)
                    train examples/pwm_flow.py "$RUNS/$task/$variant/seed$seed" \
                        env="$task" experiment="$variant" seed="$seed" "${pwm_args[@]}"
                    ;;
            esac
        done
    done
    report_dirs+=("$RUNS/$task")
done

"$PYTHON" studies/learning_report.py "${report_dirs[@]}" --out "$OUT"
