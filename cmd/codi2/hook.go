package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/hooks"
)

// runHook runs `codi2 hook claude EVENT`: one Claude Code hook, input on
// stdin, output on stdout. It exits 0 whatever the server does (fail open).
func runHook(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) >= 1 && args[0] == "git-pre-commit" {
		return runGitPreCommit(ctx, args[1:], stderr)
	}
	usage := "usage: codi2 hook claude EVENT [flags] (EVENT: " + strings.Join(hooks.Events, ", ") +
		"; JSON on stdin and stdout, see README \"Claude Code hooks\"), or codi2 hook git-pre-commit"
	if len(args) >= 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") ||
		len(args) == 2 && args[0] == "claude" && (args[1] == "-h" || args[1] == "--help") {
		fmt.Fprintln(stderr, usage)
		return nil
	}
	if len(args) < 2 || args[0] != "claude" {
		return errors.New(usage)
	}
	event := args[1]
	fs := newFlagSet("hook", stderr)
	agent := fs.String("agent", "", "agent id (default: derived from the Claude Code session)")
	url := fs.String("nats-url", cli.DefaultNATSURL, "the codi2 server")
	creds := fs.String("creds", "", "NATS credentials file")
	budget := fs.Duration("budget", hooks.DefaultBudget, "time the hook may spend on the server before it lets the agent go on")
	project := fs.String("project", "", "project name (default: derived from the repository)")
	presence := fs.Duration("presence-ttl", hooks.DefaultPresenceTTL, "how long the agent stays live after a hook's heartbeat")
	autoReserve := fs.Duration("auto-reserve", 0, "PreToolUse: reserve a free file on its first edit for this long (0: off)")
	if err := parseWithEnv(fs, args[2:]); err != nil {
		return err
	}
	return hooks.RunClaude(ctx, event, hooks.Config{Agent: *agent, NATSURL: *url, Creds: *creds, Budget: *budget,
		Project: *project, PresenceTTL: *presence, AutoReserve: *autoReserve}, stdin, stdout)
}

// runGitPreCommit runs `codi2 hook git-pre-commit`, git's pre-commit hook:
// an error (exit 1) refuses the commit; codi2 unreachable is a warning on
// stderr and exit 0.
func runGitPreCommit(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("hook git-pre-commit", stderr)
	agent := fs.String("agent", "", "the committing agent (its own reservations do not block)")
	url := fs.String("nats-url", cli.DefaultNATSURL, "the codi2 server")
	creds := fs.String("creds", "", "NATS credentials file")
	project := fs.String("project", "", "project name (default: derived from the repository)")
	budget := fs.Duration("budget", hooks.DefaultGitBudget, "time the check may spend on the server before it lets the commit through")
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	return hooks.PreCommit(ctx, hooks.GitConfig{Agent: *agent, NATSURL: *url, Creds: *creds, Project: *project, Dir: ".", Budget: *budget}, stderr)
}

// runHooks runs `codi2 hooks install|uninstall`: the Claude Code hook
// entries and the MCP server, merged into the project's settings.
func runHooks(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: codi2 hooks install|uninstall [--dir DIR] [--bin PATH] [--dry-run] [--git]"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	if len(args) < 1 || (args[0] != "install" && args[0] != "uninstall") {
		return usagef(usage)
	}
	fs := newFlagSet("hooks "+args[0], stderr)
	dir := fs.String("dir", ".", "the project directory (where .claude/ and .mcp.json live)")
	bin := fs.String("bin", hooks.Command, "the command the entries run")
	dry := fs.Bool("dry-run", false, "print the changes without writing them")
	git := fs.Bool("git", false, "also the git pre-commit hook that refuses commits of files another agent reserved")
	if err := parseWithEnv(fs, args[1:]); err != nil {
		return err
	}
	if *git {
		var did []string
		var err error
		if args[0] == "install" {
			did, err = hooks.GitInstall(context.Background(), *dir, *bin, *dry)
		} else {
			did, err = hooks.GitUninstall(context.Background(), *dir, *dry)
		}
		if err != nil {
			return err
		}
		for _, d := range did {
			fmt.Fprintln(stdout, d)
		}
	}
	plan := hooks.Install
	if args[0] == "uninstall" {
		plan = hooks.Uninstall
	}
	changes, err := plan(*dir, *bin)
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Fprintln(stdout, "nothing to change")
		return nil
	}
	for _, c := range changes {
		if *dry {
			fmt.Fprint(stdout, c.Diff())
		} else {
			fmt.Fprintln(stdout, "wrote", c.Path)
		}
	}
	if *dry {
		return nil
	}
	if err := hooks.Apply(changes); err != nil {
		return err
	}
	if args[0] == "install" {
		fmt.Fprintln(stdout, "next: start Claude Code with CODI2_AGENT set (CODI2_AGENT=agent-2 claude): the MCP server needs it, "+
			"and it makes the hooks, the MCP tools, the git hook and your shell one agent; without it each session's hooks act as claude-<hash of the session id>")
	}
	return nil
}
