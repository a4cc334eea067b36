package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// LintRiskyExecWildcard flags an allowing exec pattern whose wildcards let
// an agent choose what a powerful program does: options of programs whose
// options write files or run code, the subcommand of git, or any operand of
// a program whose operands are code (shells, interpreters, env, xargs).
const LintRiskyExecWildcard = "risky_exec_wildcard"

// codeOperandPrograms run their operands as code or as another command.
var codeOperandPrograms = []string{
	"awk", "bash", "bun", "busybox", "chroot", "csh", "dash", "deno", "doas", "env", "fish", "gawk", "gdb",
	"ksh", "lua", "make", "mawk", "nawk", "nice", "node", "nodejs", "nohup", "npx", "perl", "php",
	"python", "python2", "python3", "ruby", "sed", "setsid", "sh", "stdbuf", "strace", "su", "sudo",
	"tcsh", "time", "timeout", "watch", "xargs", "zsh",
}

// optionPrograms have options that write files or run code: git (--output,
// -c, --exec-path, --upload-pack), find (-exec, -delete, -fprint), tar
// (--to-command, --checkpoint-action), rsync (-e, --rsync-path), ssh
// (-o ProxyCommand), go (-exec, -toolexec, -o), curl and wget (-o, -K).
var optionPrograms = []string{"curl", "dd", "find", "git", "go", "rsync", "scp", "sftp", "ssh", "tar", "wget", "zip", "unzip"}

// modeOperandPrograms take their subcommand or mode as the first operand.
var modeOperandPrograms = []string{"git", "tar"}

// lintExecPatterns reports each allowing exec pattern that hands an agent
// more than the rule's author can have meant.
func lintExecPatterns(c *compiledRule) []Finding {
	if c.class == classDeny || c.rule.ExecMatch == nil {
		return nil
	}
	var out []Finding
	for _, p := range c.rule.ExecMatch.ArgvPatterns {
		if why := riskyPattern(p); why != "" {
			out = append(out, warn(c.id, LintRiskyExecWildcard, fmt.Sprintf("rule %q: pattern [%s] %s", c.id, strings.Join(p, " "), why)))
		}
	}
	return out
}

func isArgvWildcard(t string) bool {
	return t == ArgvOneOperand || t == ArgvAnyOperands || t == ArgvOneToken || t == ArgvAnyTokens
}

func riskyPattern(p []string) string {
	if isArgvWildcard(p[0]) {
		return "lets the agent choose the program"
	}
	prog := path.Base(p[0])
	wild := slices.ContainsFunc(p[1:], isArgvWildcard)
	optWild := slices.Contains(p[1:], ArgvOneToken) || slices.Contains(p[1:], ArgvAnyTokens)
	switch {
	case wild && slices.Contains(codeOperandPrograms, prog):
		return fmt.Sprintf("lets the agent choose operands of %s, which are code or a command to run; list every token literally", prog)
	case optWild && slices.Contains(optionPrograms, prog):
		return fmt.Sprintf("lets the agent choose options of %s, which can write files or run code; list the options you allow literally", prog)
	case len(p) > 1 && isArgvWildcard(p[1]) && slices.Contains(modeOperandPrograms, prog):
		return fmt.Sprintf("lets the agent choose the subcommand of %s; name it literally", prog)
	}
	return ""
}
