# Sourced by the launch scripts: knobs from the environment, echoed; DRY_RUN=1 prints.
#   knob NAME DEFAULT   sets NAME from the environment or DEFAULT and echoes NAME=value
#   run CMD ARGS...     runs CMD, or with DRY_RUN=1 prints it (shell-quoted) instead
#   remote < SCRIPT     one shell line for --command=, from a heredoc (newlines -> '; ',
#                       so no line may end with '&': put what follows on the same line)

knob() {
  local name="$1" default="$2"
  printf -v "$name" '%s' "${!name-$default}"
  export "${name?}"
  echo "$name=${!name}"
}

_quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+^-]+$ ]]; then printf '%s' "$1"; else printf '%s' "${1@Q}"; fi
}

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    local first=1 arg
    for arg in "$@"; do
      [[ $first == 1 ]] || printf ' '
      _quote "$arg"
      first=0
    done
    echo
  else
    "$@"
  fi
}

remote() {
  local script
  script="$(cat)"
  script="${script//$'\n'/; }"
  printf '%s' "$script"
}

knob DRY_RUN 0
