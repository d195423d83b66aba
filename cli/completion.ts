/**
 * Shell completion scripts, generated from the command and flag tables. Each script walks the
 * words before the cursor (skipping flags and their values) to find the command path, then offers
 * that command's subcommands, its flags, or the values of the flag being completed.
 */

import { CommandSpec, flagsOf, ROOT, Shell, sortedChildren } from "./commands.ts";
import { FlagSpec, HELP_FLAG, takesValue } from "./flags.ts";

/** One command path ("" for kupod itself, "monitor kernel", "help monitor", ...). */
interface Node {
  path: string;
  children: { name: string; short: string }[];
  flags: FlagSpec[];
}

/** Every command path, plus a mirror of the tree under `help` so `kupod help mon<TAB>` works. */
function nodes(): Node[] {
  const out: Node[] = [];
  // `topic`: the words are a help topic, which take no flags but `--help`.
  const visit = (chain: CommandSpec[], words: string[], topic: boolean) => {
    const cmd = chain[chain.length - 1];
    const isHelp = !topic && cmd.action?.kind === "help";
    const children = isHelp ? sortedChildren(ROOT).filter((c) => c !== cmd) : sortedChildren(cmd);
    const { local, inherited } = flagsOf(chain);
    const flags = topic ? [HELP_FLAG] : [...local, ...inherited];
    flags.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    out.push({ path: words.join(" "), children, flags });
    for (const c of children) {
      // A topic names a command from the root, whatever stands before it.
      visit(isHelp ? [ROOT, c] : [...chain, c], [...words, c.name], topic || isHelp);
    }
  };
  visit([ROOT], [], false);
  return out;
}

/** Arms of a bash/zsh `case` on the command path, paths with the same body sharing one arm. */
function caseArms(all: Node[], body: (n: Node) => string): string {
  const arms = new Map<string, string[]>();
  for (const n of all) arms.set(body(n), [...(arms.get(body(n)) ?? []), sq(n.path)]);
  return [...arms].map(([b, paths]) => `    ${paths.join(" | ")}) ${b} ;;`).join("\n");
}

/** All value-taking flags, which the scripts must skip together with their value. */
function valueFlags(): FlagSpec[] {
  const seen = new Map<string, FlagSpec>();
  for (const n of nodes()) for (const f of n.flags) if (takesValue(f)) seen.set(f.name, f);
  return [...seen.values()];
}

/** Single-quotes a word for bash and zsh, where nothing but a quote is special inside. */
function sq(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Fish quotes differently: a quote inside single quotes is escaped, not closed and reopened. */
function fq(s: string): string {
  return `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

const flagWords = (f: FlagSpec) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])];

/** The shell command printing a flag's candidate values, one per line; "" if none. */
function bashValues(f: FlagSpec): string {
  if (f.choices) return `compgen -W ${sq(f.choices.join(" "))} -- "$cur"`;
  switch (f.hint) {
    case "file":
      return `compgen -f -- "$cur"`;
    case "dir":
      return `compgen -d -- "$cur"`;
    case "netns":
      return `compgen -W "$(ls /run/netns 2>/dev/null)" -- "$cur"; compgen -f -- "$cur"`;
    case "pid":
      return `compgen -W "$(cd /proc && printf '%s\\n' [0-9]*)" -- "$cur"`;
    case "iface":
      return `compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur"`;
    default:
      return "";
  }
}

function bash(): string {
  const all = nodes();
  const values = valueFlags();
  const fileish = values.filter((f) => f.hint === "file" || f.hint === "dir" || f.hint === "netns");
  const cases = (body: (n: Node) => string) => caseArms(all, body);
  return `# bash completion for kupod. Load it with: source <(kupod completion bash)

__kupod_children() {
  case "$1" in
${cases((n) => `echo ${sq(n.children.map((c) => c.name).join(" "))}`)}
  esac
}

__kupod_flags() {
  case "$1" in
${cases((n) => `echo ${sq(n.flags.flatMap(flagWords).join(" "))}`)}
  esac
}

__kupod_takes_value() {
  case "$1" in
    ${values.flatMap(flagWords).join("|")}) return 0 ;;
  esac
  return 1
}

# Candidate values of flag $1 for the word $cur, one per line.
__kupod_values() {
  local cur="$2"
  case "$1" in
${values.filter(bashValues).map((f) => `    --${f.name}) ${bashValues(f)} ;;`).join("\n")}
  esac
}

_kupod() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmdpath="" word i flag="" prefix=""
  COMPREPLY=()

  # Find the command path: flags and their values may stand anywhere among the command words.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      --*=* | -) ;;
      -*)
        if __kupod_takes_value "$word"; then
          # With '=' in COMP_WORDBREAKS, "--flag=value" arrives as three words.
          if [[ "\${COMP_WORDS[i+1]}" == "=" ]]; then ((i += 2)); else ((i += 1)); fi
        fi
        ;;
      *)
        if [[ " $(__kupod_children "$cmdpath") " == *" $word "* ]]; then
          cmdpath="\${cmdpath:+$cmdpath }$word"
        fi
        ;;
    esac
  done

  # Completing a flag's value: "--flag=val", "--flag" "=" "val", or "--flag" "val".
  if [[ "$cur" == --*=* ]]; then
    flag="\${cur%%=*}" prefix="$flag=" cur="\${cur#*=}"
  elif [[ "$cur" == "=" ]] && __kupod_takes_value "$prev"; then
    flag="$prev" cur=""
  elif [[ "$prev" == "=" ]] && __kupod_takes_value "\${COMP_WORDS[COMP_CWORD-2]}"; then
    flag="\${COMP_WORDS[COMP_CWORD-2]}"
  elif __kupod_takes_value "$prev"; then
    flag="$prev"
  fi
  if [[ -n "$flag" ]]; then
    case "$flag" in
      ${fileish.map((f) => `--${f.name}`).join("|")}) compopt -o filenames 2>/dev/null ;;
    esac
    mapfile -t COMPREPLY < <(__kupod_values "$flag" "$cur")
    if [[ -n "$prefix" ]]; then COMPREPLY=("\${COMPREPLY[@]/#/$prefix}"); fi
    return 0
  fi

  local children
  children="$(__kupod_children "$cmdpath")"
  if [[ "$cur" == -* || -z "$children" ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(__kupod_flags "$cmdpath")" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -W "$children" -- "$cur")
  fi
  return 0
}

complete -F _kupod kupod`;
}

/** zsh: `name:description` entries, with colons in names escaped as _describe wants. */
function described(items: { name: string; short: string }[]): string {
  return items.map((i) => sq(`${i.name.replaceAll(":", "\\:")}:${i.short}`)).join(" ");
}

function zshValues(f: FlagSpec): string {
  if (f.choices) return `compadd -- ${f.choices.map(sq).join(" ")}`;
  switch (f.hint) {
    case "file":
      return "_files";
    case "dir":
      return "_files -/";
    case "netns":
      return "compadd -- /run/netns/*(N:t); _files";
    case "pid":
      return "compadd -- /proc/<->(N:t)";
    case "iface":
      return "compadd -- /sys/class/net/*(N:t)";
    default:
      return "_message 'value'";
  }
}

function zsh(): string {
  const all = nodes();
  const values = valueFlags();
  const flagItems = (n: Node) =>
    n.flags.flatMap((f) => flagWords(f).map((name) => ({ name, short: f.usage })));
  const cases = (body: (n: Node) => string) => caseArms(all, body);
  return `#compdef kupod
# zsh completion for kupod. Install it with: kupod completion zsh > "\${fpath[1]}/_kupod"

__kupod_children() {
  reply=()
  case "$1" in
${cases((n) => `reply=(${described(n.children)})`)}
  esac
}

__kupod_flags() {
  reply=()
  case "$1" in
${cases((n) => `reply=(${described(flagItems(n))})`)}
  esac
}

__kupod_takes_value() {
  case "$1" in
    ${values.flatMap(flagWords).join("|")}) return 0 ;;
  esac
  return 1
}

__kupod_values() {
  case "$1" in
${values.map((f) => `    --${f.name}) ${zshValues(f)} ;;`).join("\n")}
  esac
}

_kupod() {
  local cmdpath="" word entry i
  local -a reply
  # Find the command path: flags and their values may stand anywhere among the command words.
  for (( i = 2; i < CURRENT; i++ )); do
    word="\${words[i]}"
    case "$word" in
      --*=*|-) ;;
      -*) __kupod_takes_value "$word" && (( i++ )) ;;
      *)
        __kupod_children "$cmdpath"
        for entry in "\${reply[@]}"; do
          if [[ "\${entry%%:*}" == "$word" ]]; then cmdpath="\${cmdpath:+$cmdpath }$word"; break; fi
        done
        ;;
    esac
  done

  local cur="\${words[CURRENT]}"
  if [[ "$cur" == --*=* ]]; then
    compset -P '*='
    __kupod_values "\${cur%%=*}"
    return
  fi
  if (( CURRENT > 2 )) && __kupod_takes_value "\${words[CURRENT-1]}"; then
    __kupod_values "\${words[CURRENT-1]}"
    return
  fi
  __kupod_children "$cmdpath"
  if [[ "$cur" == -* || \${#reply} -eq 0 ]]; then
    __kupod_flags "$cmdpath"
    _describe -t flags 'flag' reply
  else
    _describe -t commands 'command' reply
  fi
}

if [[ "\${funcstack[1]}" == "_kupod" ]]; then
  _kupod "$@"
else
  compdef _kupod kupod
fi`;
}

function fishValues(f: FlagSpec): string {
  if (f.choices) return `-x -a ${fq(f.choices.join(" "))}`;
  switch (f.hint) {
    case "file":
      return "-r -F";
    case "dir":
      return "-x -a '(__fish_complete_directories)'";
    case "netns":
      return "-r -F -a '(ls /run/netns 2>/dev/null)'";
    case "pid":
      return "-x -a '(__fish_complete_pids)'";
    case "iface":
      return "-x -a '(__fish_print_interfaces)'";
    default:
      return "-x";
  }
}

function fish(): string {
  const all = nodes();
  const values = valueFlags();
  const lines: string[] = [];
  for (const n of all) {
    for (const c of n.children) {
      lines.push(
        `complete -c kupod -n ${fq(`__kupod_at ${fq(n.path)}`)} -a ${c.name} -d ${fq(c.short)}`,
      );
    }
  }
  // A flag is offered where it is valid: for monitor's flags, anywhere under `monitor`.
  const seen = new Set<FlagSpec>();
  for (const n of all) {
    for (const f of n.flags) {
      if (f.name === "help" || seen.has(f)) continue;
      seen.add(f);
      // Nodes come parent first, so `n` is the command defining the flag.
      const names = `${f.short ? `-s ${f.short} ` : ""}-l ${f.name}`;
      const value = takesValue(f) ? ` ${fishValues(f)}` : "";
      lines.push(
        `complete -c kupod -n ${fq(`__kupod_under ${fq(n.path)}`)} ${names}${value} -d ${
          fq(f.usage)
        }`,
      );
    }
  }
  const arms = new Map<string, string[]>();
  for (const n of all) {
    const names = n.children.map((c) => c.name).join(" ");
    arms.set(names, [...(arms.get(names) ?? []), fq(n.path)]);
  }
  const fcases = [...arms].filter(([names]) => names).map(([names, paths]) =>
    `        case ${paths.join(" ")}\n            printf '%s\\n' ${names}`
  );
  return `# fish completion for kupod. Install it with:
#   kupod completion fish > ~/.config/fish/completions/kupod.fish

function __kupod_children
    switch "$argv[1]"
${fcases.join("\n")}
    end
end

# The command path of the command line so far; flags and their values are skipped.
function __kupod_path
    set -l toks (commandline -opc)
    set -e toks[1]
    set -l cmdpath ''
    set -l skip 0
    for t in $toks
        if test $skip = 1
            set skip 0
            continue
        end
        switch $t
            case '--*=*' '-'
            case ${values.flatMap(flagWords).map(fq).join(" ")}
                set skip 1
            case '-*'
            case '*'
                if contains -- $t (__kupod_children "$cmdpath")
                    set cmdpath (string trim -- "$cmdpath $t")
                end
        end
    end
    echo $cmdpath
end

# True when the command path is $argv[1].
function __kupod_at
    set -l p (__kupod_path)
    test "$p" = "$argv[1]"
end

# True when the command path is $argv[1] or a command below it.
function __kupod_under
    set -l p (__kupod_path)
    test -z "$argv[1]" -o "$p" = "$argv[1]"; or string match -q -- "$argv[1] *" "$p"
end

complete -c kupod -f
complete -c kupod -s h -l help -d 'help for the command'
${lines.join("\n")}`;
}

/** The completion script for `shell`; no trailing newline, so print it with console.log. */
export function completionScript(shell: Shell): string {
  switch (shell) {
    case "bash":
      return bash();
    case "zsh":
      return zsh();
    case "fish":
      return fish();
  }
}
