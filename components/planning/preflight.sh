#!/bin/sh
# rocm-inference preflight: checks a ROCm host before anything is pulled or started on it.
# Run by the host component (pulumi-command, locally or over SSH) as `VAR=... sh -s` with this
# script on stdin; exits 1 with every problem found, each with how to fix it.
#
# PREFLIGHT_GPUS        "index:card:render ..." of the host GPUs this stack uses
# PREFLIGHT_GFX         KFD gfx_target_version they must have (90006 = gfx906), PREFLIGHT_GFX_NAME its name
# PREFLIGHT_VRAM_BYTES  VRAM each must have at least (mem_info_vram_total)
# PREFLIGHT_VIDEO_GID, PREFLIGHT_RENDER_GID   the group ids the stack gives the containers
# PREFLIGHT_PROJECT, PREFLIGHT_STACK          who is deploying (containers carry these labels)
# PREFLIGHT_VOLUMES     "volume:GiB:repo ..." the model cache volumes, what each model downloads, and its
#                       directory in the Hub cache (models--ORG--NAME; empty: any content will do)
# PREFLIGHT_ROOT_SHARED set (to the stack's root_mount key) where node-exporter binds / with rslave
# ROCM_ROOT             read sysfs, /dev and /etc under this directory instead of / (recorded trees)
set -u
R="${ROCM_ROOT:-}"
DOCKER="${PREFLIGHT_DOCKER:-docker}"
FIX="run python -m components.discover (with --ssh USER@HOST for a remote host) and update rocm-inference:host"
failures=0
fail() { echo "preflight: $*" >&2; failures=$((failures + 1)); }

is_node() { [ -c "$1" ] || { [ -n "$R" ] && [ -e "$1" ]; }; }
prop() { awk -v k="$1" '$1 == k { print $2 }' "$2" 2>/dev/null; }
device_of() { readlink -f "$R/sys/class/drm/$1/device" 2>/dev/null; }

# 1. The compute interface.
is_node "$R/dev/kfd" || fail "/dev/kfd does not exist: the ROCm kernel driver (amdgpu with KFD) is not loaded; install it and reboot"

# 2. Each configured GPU: its nodes exist and are one AMD GPU of the expected kind.
for gpu in ${PREFLIGHT_GPUS:-}; do
  index=${gpu%%:*}; rest=${gpu#*:}; card=${rest%%:*}; render=${rest#*:}
  ok=1
  for node in "card$card" "renderD$render"; do
    if ! is_node "$R/dev/dri/$node"; then
      fail "configured $( [ "${node#card}" != "$node" ] && echo card || echo render ) node $node of GPU $index does not exist; $FIX"
      ok=0
    fi
  done
  [ $ok = 1 ] || continue
  dev=$(device_of "renderD$render")
  if [ -z "$dev" ] || [ "$dev" != "$(device_of "card$card")" ]; then
    fail "card$card and renderD$render of GPU $index are not the same device; $FIX"
    continue
  fi
  vendor=$(cat "$dev/vendor" 2>/dev/null)
  if [ "$vendor" != "0x1002" ]; then
    fail "renderD$render (GPU $index) is not an AMD GPU (vendor ${vendor:-unknown}); $FIX"
    continue
  fi
  gfx=""
  for props in "$R"/sys/class/kfd/kfd/topology/nodes/*/properties; do
    if [ "$(prop drm_render_minor "$props")" = "$render" ] && [ "$(prop simd_count "$props")" != "0" ]; then
      gfx=$(prop gfx_target_version "$props")
    fi
  done
  if [ -z "$gfx" ]; then
    fail "renderD$render (GPU $index) has no KFD node: ROCm cannot use it; $FIX"
  elif [ -n "${PREFLIGHT_GFX:-}" ] && [ "$gfx" != "$PREFLIGHT_GFX" ]; then
    fail "GPU $index (renderD$render) has gfx_target_version $gfx, the stack expects $PREFLIGHT_GFX (${PREFLIGHT_GFX_NAME:-}); set rocm-inference:host.gpu to this host's GPU model"
  fi
  vram=$(cat "$dev/mem_info_vram_total" 2>/dev/null || echo 0)
  if [ -n "${PREFLIGHT_VRAM_BYTES:-}" ] && [ "$vram" -lt "$PREFLIGHT_VRAM_BYTES" ]; then
    fail "GPU $index (renderD$render) has $((vram / 1048576)) MiB of VRAM, the stack plans for $((PREFLIGHT_VRAM_BYTES / 1048576)) MiB; set rocm-inference:host.gpu (or gpu_memory_gib) to what this host has"
  fi
done

# 3. Group ids: the containers get these numeric groups; the device nodes belong to the host's.
for pair in "video:${PREFLIGHT_VIDEO_GID:-}" "render:${PREFLIGHT_RENDER_GID:-}"; do
  name=${pair%%:*}; want=${pair#*:}
  [ -n "$want" ] || continue
  have=$(awk -F: -v g="$name" '$1 == g { print $3 }' "$R/etc/group" 2>/dev/null)
  if [ -z "$have" ]; then
    fail "group $name does not exist on this host; the ROCm packages create it (or: groupadd -r $name)"
  elif [ "$have" != "$want" ]; then
    fail "group $name is $have on this host, the stack says $want; set rocm-inference:host.groups.$name: $have"
  fi
done

# 4. Daemon-wide log options. Docker merges daemon.json's log-opts into every container that uses the
#    daemon's default driver (moby daemon/logs.go mergeAndVerifyLogConfig); pulumi-docker reads the
#    merged map back and log_opts forces a new container (terraform-provider-docker v4.5.0
#    resource_docker_container.go L894-899, _funcs.go L983-989): a key beyond the two this project
#    sets would replace every container, and reload every model, on each `pulumi up`.
daemon_json="${PREFLIGHT_DAEMON_JSON:-$R/etc/docker/daemon.json}"
if [ -r "$daemon_json" ]; then
  flat=$(tr -d '\n\r\t' < "$daemon_json")
  driver=$(printf '%s' "$flat" | sed -n 's/.*"log-driver"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
  opts=$(printf '%s' "$flat" | sed -n 's/.*"log-opts"[[:space:]]*:[[:space:]]*{\([^}]*\)}.*/\1/p')
  extra=""
  for key in $(printf '%s' "$opts" | grep -o '"[^"]*"[[:space:]]*:' | sed 's/[":[:blank:]]//g'); do
    case "$key" in max-size|max-file) ;; *) extra="$extra $key" ;; esac
  done
  if [ -n "$extra" ] && [ "${driver:-json-file}" = json-file ]; then
    fail "${daemon_json#"$R"} sets log-opts${extra}, which Docker merges into every json-file container; pulumi-docker reads them back and would replace the containers (and reload the models) on every pulumi up: remove them from daemon.json and restart Docker (max-size and max-file may stay: this project sets both)"
  fi
fi

# 5. Docker answers.
if ! server=$($DOCKER version --format '{{.Server.Version}}' 2>&1); then
  fail "Docker does not answer${DOCKER_HOST:+ at $DOCKER_HOST}: $(echo "$server" | tail -n 1); start it (systemctl start docker) or fix rocm-inference:host.docker"
else
  # 6. No running container of another stack holds these GPUs (ours carry labels; a hand-written
  #    compose deployment does not, but its device mappings show).
  for id in $($DOCKER ps -q 2>/dev/null); do
    info=$($DOCKER inspect --format '{{.Name}}|{{index .Config.Labels "rocm-inference.project"}}|{{index .Config.Labels "rocm-inference.stack"}}|{{range .HostConfig.Devices}}{{.PathOnHost}} {{end}}' "$id" 2>/dev/null) || continue
    cname=${info%%|*}; cname=${cname#/}; rest=${info#*|}
    project=${rest%%|*}; rest=${rest#*|}; stack=${rest%%|*}; devices=${rest#*|}
    [ "$project" = "${PREFLIGHT_PROJECT:-}" ] && [ "$stack" = "${PREFLIGHT_STACK:-}" ] && continue
    for gpu in ${PREFLIGHT_GPUS:-}; do
      render=${gpu##*:}
      case " $devices " in
        *" /dev/dri/renderD$render "*)
          owner=${stack:+stack $project/$stack}
          fail "GPU ${gpu%%:*} (renderD$render) is held by running container $cname (${owner:-not deployed by rocm-inference}); stop it (docker stop $cname) or give this stack other GPUs" ;;
      esac
    done
  done
  # 7. Room for the model cache.
  need=5
  for entry in ${PREFLIGHT_VOLUMES:-}; do
    name=${entry%%:*}; rest=${entry#*:}; gib=${rest%%:*}; repo=${rest#*:}
    [ "$repo" = "$rest" ] && repo=""
    if ! mount=$($DOCKER volume inspect "$name" --format '{{.Mountpoint}}' 2>/dev/null); then
      need=$((need + gib))  # a cold cache
    elif [ -n "$repo" ] && [ ! -d "$R$mount/hub/$repo/snapshots" ]; then
      need=$((need + gib))  # a model the cache does not hold yet (or a volume this user cannot read)
    fi
  done
  dir=$($DOCKER info --format '{{.DockerRootDir}}' 2>/dev/null)
  free_kb=$(df -Pk "$R${dir:-/}" 2>/dev/null | awk 'NR == 2 { print $4 }')
  if [ -n "$free_kb" ] && [ $((free_kb / 1048576)) -lt "$need" ]; then
    fail "$((free_kb / 1048576)) GiB free under ${dir:-/}, the model cache needs about $need GiB; free disk space or move Docker's data-root"
  fi
fi

# 8. node-exporter binds / with rslave propagation, which Docker refuses where / is a private mount in its
#    own mount namespace (a Proxmox LXC, some VMs): "path / is mounted on / but it is not a shared or slave
#    mount". The daemon's view is /proc/<dockerd>/mountinfo (the one serving DOCKER_HOST's socket where
#    several run; ours where none is found); the optional fields of the / line say shared:N or master:N
#    when it propagates.
if [ -n "${PREFLIGHT_ROOT_SHARED:-}" ]; then
  pid=""
  sock=${DOCKER_HOST:-}; sock=${sock#unix://}
  for p in $(pidof dockerd 2>/dev/null); do
    case "$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)" in
      *"$sock"*) [ -z "$pid" ] && pid=$p ;;
    esac
  done
  info="$R/proc/${pid:-self}/mountinfo"
  [ -r "$info" ] || info="$R/proc/self/mountinfo"
  if [ -r "$info" ]; then
    root=$(awk '$5 == "/" { line = $0 } END { print line }' "$info")
    case "$root" in
      *" shared:"* | *" master:"* | "") ;;
      *) fail "/ is a private mount where Docker runs, and Docker refuses node-exporter's rslave bind of it; make it shared (mount --make-rshared /, at every boot) or set rocm-inference:$PREFLIGHT_ROOT_SHARED: private (node-exporter then binds / without propagation and sees only the filesystems mounted before it started)" ;;
    esac
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "preflight: $failures problem(s) on this host; nothing was pulled or started" >&2
  exit 1
fi
echo "preflight: ok (${PREFLIGHT_GPUS:-no GPUs} ${PREFLIGHT_GFX_NAME:-}, groups ${PREFLIGHT_VIDEO_GID:-}/${PREFLIGHT_RENDER_GID:-}, docker ${server:-})"
