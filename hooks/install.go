package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Command is how the installed entries run codi2; an absolute path can be
// given to Install instead.
const Command = "codi2"

// fileMatcher is the PreToolUse/PostToolUse matcher of the file tools.
const fileMatcher = "Edit|Write|MultiEdit|NotebookEdit"

// events are the Claude Code hook events Install wires, with their matcher
// ("" for events that take none).
var events = []struct{ name, matcher string }{
	{"SessionStart", ""},
	{"UserPromptSubmit", ""},
	{"PreToolUse", fileMatcher},
	{"PostToolUse", fileMatcher},
	{"Stop", ""},
	{"SessionEnd", ""},
}

// Change is one file Install or Uninstall would write: its path, and its
// content before and after.
type Change struct {
	Path          string
	Before, After []byte
}

// Diff is the changed file with its removed lines marked "-" and its added
// lines "+", for --dry-run.
func (c Change) Diff() string {
	return lineDiff(c.Path, strings.Split(string(c.Before), "\n"), strings.Split(string(c.After), "\n"))
}

// Install plans the hook entries in DIR/.claude/settings.json and the MCP
// server in DIR/.mcp.json, merged with what the files hold: other keys,
// hooks and servers are kept, in their order. It is idempotent: entries
// already there are not added again, and an up-to-date file is no change.
// bin is the command the entries run (Command when empty).
func Install(dir, bin string) ([]Change, error) {
	if bin == "" {
		bin = Command
	}
	return plan(dir, func(settings, mcp *object) error {
		hooks, err := settings.object("hooks")
		if err != nil {
			return fmt.Errorf(".claude/settings.json: %w", err)
		}
		for _, ev := range events {
			if err := addHook(hooks, ev.name, ev.matcher, bin+" hook claude "+ev.name); err != nil {
				return fmt.Errorf(".claude/settings.json: hooks.%s: %w", ev.name, err)
			}
		}
		settings.set("hooks", hooks.raw())
		servers, err := mcp.object("mcpServers")
		if err != nil {
			return fmt.Errorf(".mcp.json: %w", err)
		}
		if _, ok := servers.get("codi2"); !ok {
			servers.set("codi2", mustJSON(map[string]any{"command": bin, "args": []string{"mcp"}}))
		}
		mcp.set("mcpServers", servers.raw())
		return nil
	})
}

// Uninstall plans the removal of exactly what Install adds: hook commands
// "<bin> hook claude <event>" (and groups and events left empty by that),
// and the codi2 MCP server when it is the one Install writes.
func Uninstall(dir, bin string) ([]Change, error) {
	if bin == "" {
		bin = Command
	}
	return plan(dir, func(settings, mcp *object) error {
		if hooks, err := settings.object("hooks"); err == nil && hooks.len() > 0 {
			for _, ev := range events {
				if err := removeHook(hooks, ev.name, bin+" hook claude "+ev.name); err != nil {
					return fmt.Errorf(".claude/settings.json: hooks.%s: %w", ev.name, err)
				}
			}
			if hooks.len() == 0 {
				settings.del("hooks")
			} else {
				settings.set("hooks", hooks.raw())
			}
		}
		if servers, err := mcp.object("mcpServers"); err == nil {
			if v, ok := servers.get("codi2"); ok && jsonEqual(v, mustJSON(map[string]any{"command": bin, "args": []string{"mcp"}})) {
				servers.del("codi2")
			}
			if servers.len() == 0 {
				mcp.del("mcpServers")
			} else {
				mcp.set("mcpServers", servers.raw())
			}
		}
		return nil
	})
}

// Apply writes the changes, creating .claude/ when needed. A file that
// Uninstall leaves with nothing of its own stays, as {}.
func Apply(changes []Change) error {
	for _, c := range changes {
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(c.Path, c.After, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func plan(dir string, edit func(settings, mcp *object) error) ([]Change, error) {
	paths := []string{filepath.Join(dir, ".claude", "settings.json"), filepath.Join(dir, ".mcp.json")}
	objs := make([]*object, len(paths))
	befores := make([][]byte, len(paths))
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		befores[i] = b
		if objs[i], err = parseObject(b); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := edit(objs[0], objs[1]); err != nil {
		return nil, err
	}
	var changes []Change
	for i, p := range paths {
		after := objs[i].encode()
		if befores[i] == nil && objs[i].len() == 0 {
			continue // nothing there, nothing to write
		}
		if !bytes.Equal(befores[i], after) && !(befores[i] != nil && jsonEqual(befores[i], after)) {
			changes = append(changes, Change{Path: p, Before: befores[i], After: after})
		}
	}
	return changes, nil
}

// hookGroup is one matcher group of a hook event.
type hookGroup struct {
	Matcher string      `json:"matcher,omitempty"`
	Hooks   []hookEntry `json:"hooks"`
}

type hookEntry struct {
	Type    string `json:"type"`
	Command string `json:"command"`
	Timeout int    `json:"timeout,omitempty"`
}

func addHook(hooks *object, event, matcher, command string) error {
	var groups []json.RawMessage
	if v, ok := hooks.get(event); ok {
		if err := json.Unmarshal(v, &groups); err != nil {
			return fmt.Errorf("want a list of matcher groups: %w", err)
		}
	}
	for _, g := range groups {
		if strings.Contains(string(g), mustString(command)) {
			return nil // already installed
		}
	}
	groups = append(groups, mustJSON(hookGroup{Matcher: matcher, Hooks: []hookEntry{{Type: "command", Command: command, Timeout: 10}}}))
	hooks.set(event, mustJSON(groups))
	return nil
}

func removeHook(hooks *object, event, command string) error {
	v, ok := hooks.get(event)
	if !ok {
		return nil
	}
	var groups []json.RawMessage
	if err := json.Unmarshal(v, &groups); err != nil {
		return fmt.Errorf("want a list of matcher groups: %w", err)
	}
	var kept []json.RawMessage
	changed := false
	for _, raw := range groups {
		g, err := parseObject(raw)
		if err != nil {
			kept = append(kept, raw)
			continue
		}
		hooksRaw, _ := g.get("hooks")
		var entries []json.RawMessage
		if json.Unmarshal(hooksRaw, &entries) != nil {
			kept = append(kept, raw)
			continue
		}
		var left []json.RawMessage
		for _, e := range entries {
			var entry struct {
				Command string `json:"command"`
			}
			if json.Unmarshal(e, &entry) == nil && entry.Command == command {
				continue
			}
			left = append(left, e)
		}
		switch {
		case len(left) == len(entries):
			kept = append(kept, raw) // untouched: byte for byte, members in order
		case len(left) > 0:
			g.set("hooks", mustJSON(left))
			kept = append(kept, g.raw())
			changed = true
		default:
			changed = true
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		hooks.del(event)
	default:
		hooks.set(event, mustJSON(kept))
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only values this package builds
	}
	return b
}

func mustString(s string) string { return string(mustJSON(s)) }

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return bytes.Equal(mustJSON(x), mustJSON(y))
}
