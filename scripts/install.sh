#!/usr/bin/env bash
# Install gpulse on a host: its own virtualenv under /opt/gpulse, the systemd units, the gpulse
# system user (sysusers.d), its directories (tmpfiles.d), example configs and TLS certificates.
# See docs/install.md. Run as root. Safe to run again: configs and keys already there are kept.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [options]

  --role agent|collector|both   which service to install and enable (default: agent)
  --root DIR                    install into DIR instead of / (a staging or test root; nothing is started)
  --source PATH                 what pip installs: this checkout (default), a wheel or a requirement
  --python PY                   interpreter for the virtualenv, 3.11 or newer (default: python3)
  --pip-args "ARGS"             extra arguments for pip install (e.g. "--no-index --find-links /srv/wheels")

Certificates are issued on the trusted machine that holds the CA key, never on this host
(`gpulse pki issue DIR --agent HOST`), then either taken from a copy of that directory:
  --ca-dir DIR                  ca.pem, agents/HOST.pem and collectors/NAME.pem (with keys); no CA key needed
  --host HOST                   agent host id (default: hostname); written into agent.toml
  --collector-name NAME         collector certificate name (default: hostname)
or copied from files:
  --tls-ca FILE --tls-cert FILE --tls-key FILE

  --collector HOST:PORT         a collector for agent.toml's targets (repeatable); the example's
                                collector-1.example.net would never answer

  --no-start                    install and enable, but do not start (ignored with --root: never starts)
EOF
}

ROLE=agent ROOT=/ SOURCE="" PYTHON=python3 PIP_ARGS="" CA_DIR="" HOST_ID="" COLLECTOR_NAME=""
TLS_CA="" TLS_CERT="" TLS_KEY="" START=1
TARGETS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --role) ROLE=$2; shift 2 ;;
        --root) ROOT=$2; shift 2 ;;
        --source) SOURCE=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --pip-args) PIP_ARGS=$2; shift 2 ;;
        --ca-dir) CA_DIR=$2; shift 2 ;;
        --host) HOST_ID=$2; shift 2 ;;
        --collector-name) COLLECTOR_NAME=$2; shift 2 ;;
        --collector) TARGETS+=("$2"); shift 2 ;;
        --tls-ca) TLS_CA=$2; shift 2 ;;
        --tls-cert) TLS_CERT=$2; shift 2 ;;
        --tls-key) TLS_KEY=$2; shift 2 ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "install.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

case "$ROLE" in agent|collector|both) ;; *) die "--role must be agent, collector or both, not '$ROLE'" ;; esac
[[ $(id -u) -eq 0 ]] || die "run as root (it creates a system user and installs systemd units)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOURCE=${SOURCE:-$HERE}
ROOT=$(realpath -m "$ROOT")
R=${ROOT%/}  # prefix for every path below; empty when installing into /
ROLES=(agent collector)
[[ $ROLE == both ]] || ROLES=("$ROLE")
if [[ -n $TLS_CA || -n $TLS_CERT || -n $TLS_KEY ]]; then
    [[ -n $TLS_CA && -n $TLS_CERT && -n $TLS_KEY ]] || die "--tls-ca, --tls-cert and --tls-key go together"
    [[ $ROLE != both ]] || die "--tls-* installs one identity; use --ca-dir for --role both"
    [[ -z $CA_DIR ]] || die "use either --ca-dir or --tls-*, not both"
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than Python 3.11"
for tool in systemd-sysusers systemd-tmpfiles; do
    command -v "$tool" >/dev/null || die "$tool not found: gpulse needs systemd"
done

VENV=$R/opt/gpulse/venv
step "virtualenv $VENV"
mkdir -p "$R/opt/gpulse"
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC2086  # PIP_ARGS is a list of arguments on purpose
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$SOURCE"
GPULSE=$VENV/bin/gpulse
[[ -x $GPULSE ]] || die "pip did not install the gpulse command into $VENV"

step "systemd units, sysusers.d and tmpfiles.d"
install -D -m 0644 "$HERE/systemd/gpulse.sysusers.conf" "$R/usr/lib/sysusers.d/gpulse.conf"
install -D -m 0644 "$HERE/systemd/gpulse.tmpfiles.conf" "$R/usr/lib/tmpfiles.d/gpulse.conf"
for role in "${ROLES[@]}"; do
    install -D -m 0644 "$HERE/systemd/gpulse-$role.service" "$R/usr/lib/systemd/system/gpulse-$role.service"
done
install -D -m 0644 "$HERE/systemd/gpulse-agent-kmsg.conf" "$R/opt/gpulse/share/systemd/gpulse-agent-kmsg.conf"
install -D -m 0644 "$HERE/docs/install.md" "$R/opt/gpulse/share/doc/install.md"

step "user gpulse and its directories"
mkdir -p "$R/etc"
if [[ -z $R ]]; then
    systemd-sysusers /usr/lib/sysusers.d/gpulse.conf
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/gpulse.conf
else
    systemd-sysusers --root="$ROOT" "$R/usr/lib/sysusers.d/gpulse.conf"
    systemd-tmpfiles --create --root="$ROOT" "$R/usr/lib/tmpfiles.d/gpulse.conf"
fi
# Numeric ids from the target root's own files: under --root, the host's passwd does not know gpulse.
GID=$(awk -F: '$1 == "gpulse" { print $3 }' "$R/etc/group")
[[ -n $GID ]] || die "group gpulse was not created in $R/etc/group"

step "configuration in $R/etc/gpulse"
for role in "${ROLES[@]}"; do
    target=$R/etc/gpulse/$role.toml
    if [[ -e $target ]]; then
        echo "    keeping existing $target"
    else
        install -m 0640 -o 0 -g "$GID" "$HERE/deploy/config/$role.toml" "$target"
        if [[ $role == agent ]]; then
            # The identity and targets of this host, not the example's: the collector would refuse those.
            sed -i "s/^host_id = .*/host_id = \"${HOST_ID:-$(hostname)}\"/" "$target"
            if [[ ${#TARGETS[@]} -gt 0 ]]; then
                list=$(printf '"%s", ' "${TARGETS[@]}")
                sed -i "s/^targets = .*/targets = [${list%, }]/" "$target"
            fi
        fi
    fi
done

tls_install() {  # tls_install SRC DEST MODE: readable by root and the gpulse group only
    install -D -m "$3" -o 0 -g "$GID" "$1" "$R/etc/gpulse/tls/$2"
}
if [[ -n $CA_DIR ]]; then
    step "certificates from $CA_DIR (issued on the trusted machine)"
    [[ -r $CA_DIR/ca.pem ]] || die "no ca.pem in $CA_DIR"
    tls_install "$CA_DIR/ca.pem" ca.pem 0644
    for role in "${ROLES[@]}"; do
        if [[ $role == agent ]]; then
            name=${HOST_ID:-$(hostname)} folder=agents flag=--agent
        else
            name=${COLLECTOR_NAME:-$(hostname)} folder=collectors flag=--collector
        fi
        # Issuing here would need the CA key on this host: it stays on the trusted machine.
        [[ -r $CA_DIR/$folder/$name.pem && -r $CA_DIR/$folder/$name-key.pem ]] \
            || die "no $role certificate for $name in $CA_DIR/$folder; on the machine with the CA key run: gpulse pki issue DIR $flag $name, and copy it here"
        tls_install "$CA_DIR/$folder/$name.pem" "$role.pem" 0644
        tls_install "$CA_DIR/$folder/$name-key.pem" "$role-key.pem" 0640
    done
elif [[ -n $TLS_CA ]]; then
    step "certificates copied into $R/etc/gpulse/tls"
    tls_install "$TLS_CA" ca.pem 0644
    tls_install "$TLS_CERT" "$ROLE.pem" 0644
    tls_install "$TLS_KEY" "$ROLE-key.pem" 0640
else
    echo "    no certificates given: put ca.pem, $ROLE.pem and $ROLE-key.pem in $R/etc/gpulse/tls (see docs/install.md)"
fi

step "enable the units"
units=()
for role in "${ROLES[@]}"; do units+=("gpulse-$role.service"); done
if [[ -n $R ]]; then
    systemctl --root="$ROOT" enable "${units[@]}"
    echo "    installed into $ROOT; nothing started"
elif [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable "${units[@]}"
    for role in "${ROLES[@]}"; do
        "$GPULSE" check-config "$role" "/etc/gpulse/$role.toml" || die "fix /etc/gpulse/$role.toml, then: systemctl start gpulse-$role"
    done
    if [[ $START -eq 1 ]]; then
        systemctl restart "${units[@]}"
        systemctl --no-pager status "${units[@]}" || true
    fi
else
    echo "    systemd is not running here: enable ${units[*]} once it is"
fi
step "done"
