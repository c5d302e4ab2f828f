# bash completion for pstrain: commands, flags, and the values of flags that take a known set.
# Installed as share/bash-completion/completions/pstrain (bash-completion loads it on demand),
# or `source` it from ~/.bashrc. The commands and flags come from the binary's own --help, read
# once per shell and command, so completion always matches the pstrain being completed.

# The flags `pstrain [COMMAND] --help` lists (--name), space-separated.
_pstrain_flags() {
  local bin=$1 cmd=$2
  local key="_pstrain_cache_flags_${cmd:-role}"
  if [[ -z ${!key-} ]]; then
    local help
    if [[ -n $cmd ]]; then
      help=$("$bin" "$cmd" --help 2>/dev/null)
    else
      help=$("$bin" --help 2>/dev/null)
    fi
    # The option lines only ("  --name TYPE  help", "  -V,--version", "  --x,--nox{false}"),
    # not flags quoted in descriptions or examples.
    printf -v "$key" '%s' "$(sed -nE 's/^ +((-[A-Za-z],)?--[a-z][^ ]*).*/\1/p' <<<"$help" |
      tr ',' '\n' | sed -E 's/[{=[].*//' | grep -E '^--' | sort -u | tr '\n' ' ')"
  fi
  printf '%s' "${!key}"
}

# The commands `pstrain --help` lists under "Subcommands:".
_pstrain_commands() {
  local bin=$1
  if [[ -z ${_pstrain_cache_commands-} ]]; then
    _pstrain_cache_commands=$("$bin" --help 2>/dev/null |
      sed -n '/^Subcommands:/,/^$/{s/^  \([a-z][a-z-]*\) .*/\1/p}' | tr '\n' ' ')
  fi
  printf '%s' "$_pstrain_cache_commands"
}

_pstrain() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prev=""
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  # "--flag=value": bash splits at '=' (COMP_WORDBREAKS), giving "--flag" "=" "value".
  if [[ $cur == "=" ]]; then
    cur=""
  elif [[ $prev == "=" ]] && ((COMP_CWORD > 1)); then
    prev=${COMP_WORDS[COMP_CWORD - 2]}
  elif [[ $cur == --*=* ]]; then
    prev=${cur%%=*}
    cur=${cur#*=}
  fi
  local bin=${COMP_WORDS[0]}
  bin=$(command -v -- "$bin" 2>/dev/null) || bin=pstrain
  local commands cmd="" i
  commands=$(_pstrain_commands "$bin")
  for ((i = 1; i < COMP_CWORD; i++)); do
    if [[ " $commands " == *" ${COMP_WORDS[i]} "* ]]; then
      cmd=${COMP_WORDS[i]}
      break
    fi
  done

  case $prev in
    --model) mapfile -t COMPREPLY < <(compgen -W "mlp cnn" -- "$cur"); return ;;
    --optimizer) mapfile -t COMPREPLY < <(compgen -W "adam sgd momentum adagrad" -- "$cur"); return ;;
    --job_name) mapfile -t COMPREPLY < <(compgen -W "ps worker" -- "$cur"); return ;;
    --log_level) mapfile -t COMPREPLY < <(compgen -W "debug info warning error" -- "$cur"); return ;;
    --compress) mapfile -t COMPREPLY < <(compgen -W "none fp16 bf16" -- "$cur"); return ;;
    --transport) mapfile -t COMPREPLY < <(compgen -W "auto tcp ipc shm" -- "$cur"); return ;;
    --data_dir | --checkpoint_dir | --log_dir | --output_dir | --job_dir)
      mapfile -t COMPREPLY < <(compgen -d -- "$cur")
      return
      ;;
    --format) mapfile -t COMPREPLY < <(compgen -W "onnx safetensors" -- "$cur"); return ;;
    --input) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --flagfile | --summary_json | --pstrain_binary | --secret_file | --checkpoint | --output)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return
      ;;
  esac
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_pstrain_flags "$bin" "$cmd")" -- "$cur")
  elif [[ -z $cmd ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
  elif [[ $cmd == status || $cmd == checkpoint ]]; then
    mapfile -t COMPREPLY < <(compgen -d -- "$cur")
  fi
}
complete -F _pstrain pstrain
