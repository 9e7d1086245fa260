#!/bin/sh
# gpulse remediation command for Kubernetes: cordon and taint the node on a drain, uncordon and
# untaint it on a resume. The collector runs it with the action as JSON on stdin:
#   {"event": "drain"|"resume", "dry_run": bool, "action": {"host": ..., "node": ..., "reason": ...}, "alert": {...}}
# Configure it in collector.toml:
#   [remediation.command]
#   path = "/usr/share/gpulse/remediation/kubernetes-cordon.sh"
#   timeout_seconds = 30
# The Kubernetes node name is the action's "node" ([remediation.slurm] node_name does not apply
# here; it is the gpulse host id). KUBECTL overrides the kubectl binary; the collector's user needs
# a kubeconfig allowed to patch nodes.
set -eu
KUBECTL="${KUBECTL:-kubectl}"
TAINT_KEY="${GPULSE_TAINT_KEY:-gpulse.dev/unhealthy}"
input="$(cat)"
field() { printf '%s' "$input" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
event="$(field 'd["event"]')"
dry="$(field 'str(d["dry_run"]).lower()')"
node="$(field 'd["action"]["node"]')"
alert="$(field 'd["action"]["alertname"]')"
run() {
    if [ "$dry" = "true" ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}
case "$event" in
drain)
    run "$KUBECTL" cordon "$node"
    run "$KUBECTL" taint nodes "$node" "$TAINT_KEY=$alert:NoSchedule" --overwrite
    ;;
resume)
    run "$KUBECTL" taint nodes "$node" "$TAINT_KEY:NoSchedule-"
    run "$KUBECTL" uncordon "$node"
    ;;
*)
    echo "unknown event $event" >&2
    exit 2
    ;;
esac
