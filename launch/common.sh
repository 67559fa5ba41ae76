# What the launchers share, sourced by each: die, quote and parse_args. The sourcing script sets `prog` (its name in
# messages) and defines `usage` (its help); parse_args sets opt, dry_run and args for it:
# shellcheck shell=bash disable=SC2034,SC2154

die() { # usage error: one line on stderr, exit 2
  echo "$prog: error: $*" >&2
  exit 2
}

quote() { # the arguments quoted for the shell, space separated: as they are when safe, else in single quotes, else %q
  local a out=() safe='^[A-Za-z0-9_./:=,@%+-]+$'
  for a in "$@"; do
    if [[ $a =~ $safe ]]; then
      out+=("$a")
    elif [[ $a != *"'"* ]]; then
      out+=("'$a'")
    else
      out+=("$(printf '%q' "$a")")
    fi
  done
  printf '%s\n' "${out[*]}"
}

one_of() { # one_of WORD LIST: whether WORD is one of the space-separated words of LIST
  local w
  for w in $2; do
    [[ $1 == "$w" ]] && return 0
  done
  return 1
}

# parse_args "VALUED OPTIONS" "FLAG OPTIONS" ARGS...: parses the launcher's options, then '--', then the run's
# arguments. Sets opt[--NAME] for each option given (VALUE for `--NAME VALUE` or `--NAME=VALUE`, 1 for a flag),
# dry_run (1 with --dry-run, else 0) and args (the run's arguments). -h/--help prints the usage and exits 0.
declare -A opt=()
dry_run=0
args=()
parse_args() {
  local valued=$1 flags=$2 arg key value
  shift 2
  while (($#)); do
    arg=$1
    shift
    case $arg in
      --)
        (($#)) || die "no run arguments after '--' (e.g. -- --config=configs/quickstart.py --workdir=DIR)"
        args=("$@")
        return ;;
      -h | --help) usage; exit 0 ;;
      --dry-run | --dry_run) dry_run=1; continue ;;
    esac
    if one_of "$arg" "$flags"; then
      opt[$arg]=1
      continue
    fi
    if [[ $arg == --*=* ]]; then
      key=${arg%%=*}
      value=${arg#*=}
    else
      key=$arg
      if one_of "$key" "$valued"; then
        (($#)) || die "option $key needs a value"
        value=$1
        shift
      fi
    fi
    one_of "$key" "$valued" ||
      die "unknown option '$arg' (launcher options go before '--', the run's arguments after it; see --help)"
    opt[$key]=$value
  done
  die "missing '--' before the run's arguments (e.g. -- --config=configs/quickstart.py --workdir=DIR)"
}
