# image/lib.sh — shell helpers shared by scripts/build-image, scripts/run-vm and
# scripts/test-image (sourced, not run). Owned by the image work.
#   log MSG...             timestamped message on stderr
#   die MSG...             log and exit 1
#   need_root              exit unless uid 0
#   apt_install_missing CMD:PKG...   apt-get install the PKGs whose CMD is missing
#   debian_mirror SUITE    the archive URI this host's apt already uses for SUITE
#   ensure_backports       add bookworm-backports (same mirror as bookworm) if absent
#   ensure_qemu            qemu-system-x86 from bookworm-backports (matches qemu-utils), ovmf
#   free_ports N           N distinct free TCP ports on 127.0.0.1, one per line
#   smtp_banner HOST PORT TIMEOUT   exit 0 iff the server's first line starts with 220
# Python helpers use Debian's /usr/bin/python3 (stdlib only).

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, mkfs, chroot)"; }

apt_updated=
apt_update_once() {
  [ -n "$apt_updated" ] && return 0
  log "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  apt_updated=1
}

apt_install_missing() {
  local pair cmd pkg missing=()
  for pair in "$@"; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    if [[ $cmd == /* ]]; then [ -e "$cmd" ] && continue
    else command -v "$cmd" >/dev/null 2>&1 && continue; fi
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update_once
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The archive URI apt is configured with for SUITE (e.g. bookworm,
# bookworm-security), so the image comes from the same mirror as the host.
debian_mirror() {
  apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 'Created-By: Packages' 2>/dev/null |
    awk -v s="$1" '$1 == s { print $2; exit }'
}

ensure_backports() {
  if [ -n "$(debian_mirror bookworm-backports)" ]; then return 0; fi
  local uri; uri=$(debian_mirror bookworm)
  [ -n "$uri" ] || die "apt has no bookworm source to derive bookworm-backports from"
  log "adding bookworm-backports from $uri"
  cat > /etc/apt/sources.list.d/tern-bookworm-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=
  apt_update_once
}

# Debian 12's qemu-system-x86 (7.2) conflicts with the qemu-utils 10.0 from
# backports that these machines carry: take both from backports.
ensure_qemu() {
  if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    ensure_backports
    log "apt-get install -t bookworm-backports qemu-system-x86"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports \
      qemu-system-x86 qemu-utils >&2
  fi
  apt_install_missing /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf
}

free_ports() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

smtp_banner() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        line = s.makefile("rb").readline(1000).decode("utf-8", "replace").rstrip()
except OSError as e:
    print(f"no banner: {e}", file=sys.stderr); sys.exit(1)
print(line)
sys.exit(0 if line.startswith("220") else 1)
PY
}
