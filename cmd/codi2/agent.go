package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
)

const agentUsage = `Usage:
  codi2 agent add ID [--role agent|observer|admin] [--data DIR] [--out FILE]
      issue a credentials file for ID (default ./ID.creds) for nats --creds,
      nats.UserCredentials and every codi2 verb's --creds
  codi2 agent ls [--data DIR] [--json]
      list the credentials issued and which are revoked
  codi2 agent revoke ID [--data DIR]
      revoke every credential of ID; a running server cuts its clients off
      within a second and refuses them from then on
  codi2 agent server-config [--data DIR]
      print the nats-server configuration that trusts these credentials
      (for codi2 serve --nats-url; see deploy/nats)
`

// runAgent runs `codi2 agent add|ls|revoke`. It works on the server's
// data directory (DIR/auth) directly, beside a running server or not.
func runAgent(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("agent: missing subcommand\n\n%s", agentUsage)
	}
	switch args[0] {
	case "-h", "--help", "help":
		_, err := io.WriteString(stdout, agentUsage)
		return err
	case "add":
		return runAgentAdd(args[1:], stdout, stderr)
	case "ls", "list":
		return runAgentLs(args[1:], stdout, stderr)
	case "revoke":
		return runAgentRevoke(args[1:], stdout, stderr)
	case "server-config":
		return runAgentServerConfig(args[1:], stdout, stderr)
	default:
		return usagef("agent: unknown subcommand %q\n\n%s", args[0], agentUsage)
	}
}

func openAuthority(dataDir string) (*auth.Authority, error) {
	return auth.Open(filepath.Join(dataDir, "auth"))
}

func runAgentAdd(args []string, stdout, stderr io.Writer) error {
	var dataDir, roleName, out string
	var asJSON bool
	fs := newFlagSet("codi2 agent add", stderr)
	fs.StringVar(&dataDir, "data", "./codi2-data", "the server's data directory")
	fs.StringVar(&roleName, "role", "agent", "agent, observer, admin, or service (codi2 serve --nats-url --creds)")
	fs.StringVar(&out, "out", "", "credentials file to write (default ./ID.creds)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("agent add: want one agent id\n\n%s", agentUsage)
	}
	id := pos[0]
	role, err := auth.ParseRole(roleName)
	if err != nil {
		return usagef("agent add: --role: %w", err)
	}
	if err := subjects.ValidAgent(id); err != nil {
		// Before the authority is opened, which makes its keys on first
		// use: a mistyped id leaves nothing behind.
		return usagef("agent add: %w: %v", auth.ErrBadID, err)
	}
	if out == "" {
		out = id + ".creds"
	}
	a, err := openAuthority(dataDir)
	if err != nil {
		return fmt.Errorf("agent add: %w", err)
	}
	// Make the file first (refusing to overwrite one), so that no
	// credential is recorded that nobody holds.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("agent add: %w", err)
	}
	creds, ag, err := bus.Issue(a, id, role)
	if err == nil {
		_, err = f.Write(creds)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("agent add: %w", err)
	}
	path, _ := filepath.Abs(out)
	if asJSON {
		return json.NewEncoder(stdout).Encode(agentJSON(ag, path))
	}
	fmt.Fprintf(stdout, "%s (%s) credentials written to %s\n", ag.ID, ag.Role, path)
	return nil
}

func runAgentLs(args []string, stdout, stderr io.Writer) error {
	var dataDir string
	var asJSON bool
	fs := newFlagSet("codi2 agent ls", stderr)
	fs.StringVar(&dataDir, "data", "./codi2-data", "the server's data directory")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per credential")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("agent ls: unexpected arguments %q", pos)
	}
	a, err := openAuthority(dataDir)
	if err != nil {
		return fmt.Errorf("agent ls: %w", err)
	}
	list, err := a.List()
	if err != nil {
		return fmt.Errorf("agent ls: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, ag := range list {
			if err := enc.Encode(agentJSON(ag, "")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tISSUED\tREVOKED\tKEY")
	for _, ag := range list {
		revoked := "-"
		if ag.RevokedAt != nil {
			revoked = ag.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ag.ID, ag.Role, ag.IssuedAt.Format(time.RFC3339), revoked, ag.Key)
	}
	return tw.Flush()
}

func runAgentRevoke(args []string, stdout, stderr io.Writer) error {
	var dataDir string
	fs := newFlagSet("codi2 agent revoke", stderr)
	fs.StringVar(&dataDir, "data", "./codi2-data", "the server's data directory")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("agent revoke: want one agent id\n\n%s", agentUsage)
	}
	a, err := openAuthority(dataDir)
	if err != nil {
		return fmt.Errorf("agent revoke: %w", err)
	}
	n, err := a.Revoke(pos[0])
	if err != nil {
		return fmt.Errorf("agent revoke: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d credentials revoked\n", pos[0], n)
	return nil
}

func runAgentServerConfig(args []string, stdout, stderr io.Writer) error {
	var dataDir string
	fs := newFlagSet("codi2 agent server-config", stderr)
	fs.StringVar(&dataDir, "data", "./codi2-data", "the server's data directory")
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	a, err := openAuthority(dataDir)
	if err != nil {
		return fmt.Errorf("agent server-config: %w", err)
	}
	conf, err := a.ServerConfig()
	if err != nil {
		return fmt.Errorf("agent server-config: %w", err)
	}
	_, err = io.WriteString(stdout, conf)
	return err
}

// agentJSON is the --json form of a registry entry; path is the
// credentials file just written, if any.
func agentJSON(ag auth.Agent, path string) map[string]any {
	m := map[string]any{"id": ag.ID, "role": ag.Role, "key": ag.Key, "issued_at": ag.IssuedAt.Format(time.RFC3339), "revoked_at": nil}
	if ag.RevokedAt != nil {
		m["revoked_at"] = ag.RevokedAt.Format(time.RFC3339Nano)
	}
	if path != "" {
		m["creds"] = path
	}
	return m
}

// parseInterleaved is parseWithEnv for verbs with positional arguments,
// which may stand before, between or after the flags; it returns them.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	rest := args
	env := true
	for {
		var err error
		if env {
			err = parseWithEnv(fs, nil)
			env = false
		}
		if err == nil {
			if err = fs.Parse(rest); err != nil && !errors.Is(err, flag.ErrHelp) {
				err = usageError{err}
			}
		}
		if err != nil {
			return nil, err
		}
		rest = fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
}

// credsFlag defines --creds (CODI2_CREDS) on a verb that talks to a
// running server.
func credsFlag(fs *flag.FlagSet, creds *string) {
	fs.StringVar(creds, "creds", "", "credentials `FILE` from codi2 agent add, for a server with auth")
}

// clientOptions are the connection options of a verb: its name and, with
// a credentials file, the credentials and their reply inbox prefix.
func clientOptions(name, creds string) []nats.Option {
	opts := []nats.Option{nats.Name(name)}
	if creds != "" {
		opts = append(opts, bus.Credentials(creds))
	}
	return opts
}
