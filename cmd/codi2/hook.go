package main

import (
	"context"
	"fmt"
	"io"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/hooks"
)

// runHook runs `codi2 hook claude EVENT`: one Claude Code hook, input on
// stdin, output on stdout. It exits 0 whatever the server does (fail open).
func runHook(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "claude" {
		return fmt.Errorf("usage: codi2 hook claude EVENT (SessionStart, UserPromptSubmit, PreToolUse, PostToolUse, Stop)")
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

// runHooks runs `codi2 hooks install|uninstall`: the Claude Code hook
// entries and the MCP server, merged into the project's settings.
func runHooks(args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 || (args[0] != "install" && args[0] != "uninstall") {
		return fmt.Errorf("usage: codi2 hooks install|uninstall [--dir DIR] [--bin PATH] [--dry-run]")
	}
	fs := newFlagSet("hooks "+args[0], stderr)
	dir := fs.String("dir", ".", "the project directory (where .claude/ and .mcp.json live)")
	bin := fs.String("bin", hooks.Command, "the command the entries run")
	dry := fs.Bool("dry-run", false, "print the changes without writing them")
	if err := parseWithEnv(fs, args[1:]); err != nil {
		return err
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
	return hooks.Apply(changes)
}
