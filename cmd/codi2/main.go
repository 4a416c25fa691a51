// Command codi2 runs the codi2 event platform: the embedded NATS message
// bus, the state service and the audit log, in one process.
//
//	codi2 serve      run the server (flags below, or CODI2_* variables)
//	codi2 bench      measure codi2 against the design targets and CODI v1
//	codi2 audit      export the audit log, verify an export or the server's log
//	codi2 agent      issue, list and revoke credentials
//	codi2 version    print the version
//
// and the agent verbs of package cli (codi2 help lists them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/codi2/codi2/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `codi2: the event platform AI coding agents coordinate on.

Usage:
  codi2 serve [flags]     run the server (codi2 serve -h for flags)
  codi2 bench [flags]     measure codi2 against the design targets and CODI v1
  codi2 audit export      write audit records as JSON lines from a running server
  codi2 audit verify      check an export offline (--file) or the server's log
  codi2 mcp --agent ID    serve the MCP tools for one agent over stdio (--http ADDR)
  codi2 hook claude EVENT a Claude Code hook (JSON on stdin and stdout)
  codi2 hook git-pre-commit  refuse a commit of files another agent reserved (git's pre-commit hook)
  codi2 hooks install     wire the hooks and the MCP server into .claude/settings.json and .mcp.json
  codi2 hooks uninstall   remove exactly what install added (--git: the pre-commit hook)
  codi2 agent add|ls|revoke  issue, list and revoke credentials (codi2 agent for flags)
  codi2 version           print the version

Agent verbs (codi2 VERB -h for each; --agent/CODI2_AGENT, --nats-url/CODI2_NATS_URL, --json):
  send TO TYPE [DATA|-]   send a durable message to an agent (or all)
  inbox                   print pending messages and ack them
  claim KIND ID           take a lease on a record if nobody holds one
  renew KIND ID --rev N   extend a lease held at revision N
  release KIND ID --rev N end a lease, keeping the record (--delete removes it)
  reserve PATTERN...      reserve files or globs in this repository, all or none
  unreserve PATTERN...    release your reservations (--all for every one)
  reservations            live reservations (--agent, --path PATH)
  heartbeat               keep this agent's presence alive (--ttl, --task, --stop)
  who                     live agents and what each holds
  log CATEGORY [DATA|-]   record an audit event from this agent
  history                 print audit records (--since 1h, --source, --category)
  get KIND ID             read one record
  list KIND               list records of a kind
  watch KIND [ID]         print state events as they happen
  watch --files [DIR]     record the working tree's file changes as audit events
  status                  the server's watermarks and health
  import v1 FILE...       import CODI v1 logs (audit events, task state; --dry-run)

Exit codes: 0 done, 1 error, 2 bad usage, 3 conflict (lost a claim or reservation;
the holder is printed), 4 not found, 5 server unreachable or timed out.
`

// run dispatches a command line and returns the process exit code: 0 on
// success, 2 for bad usage (no command, an unknown one, a bad flag or
// subcommand: a usageError), 1 on any other error. codi2 hook exits 1 on
// bad usage too, since Claude Code takes a hook's exit 2 as a block.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, os.Stdin, stdout, stderr)
}

// runWith is run reading standard input from stdin (hooks and verbs that
// take "-").
func runWith(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if cli.IsVerb(firstWord(args)) || (args[0] == "help" && len(args) > 1 && cli.IsVerb(args[1])) {
		return cli.Run(ctx, args, cli.IO{In: stdin, Out: stdout, Err: stderr})
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "audit":
		err = runAudit(ctx, args[1:], stdout, stderr)
	case "mcp":
		err = runMCP(ctx, args[1:], stderr)
	case "hook":
		err = runHook(ctx, args[1:], stdin, stdout, stderr)
	case "hooks":
		err = runHooks(args[1:], stdout, stderr)
	case "agent":
		err = runAgent(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		if len(args) > 1 && args[1] != "help" {
			// help VERB is VERB -h (verbs went to cli.Run above).
			if !adminCommands[args[1]] {
				fmt.Fprintf(stderr, "codi2: unknown command %q (codi2 help lists them)\n", args[1])
				return 2
			}
			return runWith(ctx, []string{args[1], "-h"}, stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "codi2: unknown command %q (codi2 help lists them)\n", args[0])
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "codi2:", err)
		if errors.As(err, new(usageError)) && args[0] != "hook" {
			return 2
		}
		return 1
	}
	return 0
}

// adminCommands are the commands run dispatches itself (not cli verbs)
// that take -h.
var adminCommands = map[string]bool{"serve": true, "bench": true, "audit": true, "mcp": true, "hook": true, "hooks": true, "agent": true, "version": true}

// firstWord is the first argument that is not a flag or a flag's value:
// the verb of `codi2 --json --agent a1 status`.
func firstWord(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a
		}
		if !strings.Contains(a, "=") && takesValue(strings.TrimLeft(a, "-")) {
			i++ // skip the flag's value
		}
	}
	return ""
}

// takesValue reports whether an agent verb's global flag takes a value.
func takesValue(name string) bool {
	switch name {
	case "agent", "nats-url", "creds", "timeout":
		return true
	}
	return false
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "codi2 " + v
}
