package hooks_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codi2/codi2/hooks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const existingSettings = `{
  "permissions": {"allow": ["Bash(go test:*)"]},
  "hooks": {
    "PostToolUse": [
      {"matcher": "Write", "hooks": [{"type": "command", "command": "gofmt -w \"$CLAUDE_FILE\""}]}
    ],
    "PreToolUse": [
      {"matcher": "Bash", "hooks": [{"type": "command", "command": "echo mine"}]}
    ]
  },
  "model": "opus"
}
`

func TestInstall_MergeIdempotentUninstall(t *testing.T) {
	dir := t.TempDir()
	settings := filepath.Join(dir, ".claude", "settings.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(settings), 0o755))
	require.NoError(t, os.WriteFile(settings, []byte(existingSettings), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".mcp.json"), []byte(`{"mcpServers":{"other":{"command":"x"}}}`), 0o644))

	changes, err := hooks.Install(dir, "")
	require.NoError(t, err)
	require.Len(t, changes, 2)
	diff := changes[0].Diff()
	assert.Contains(t, diff, `+ `)
	assert.Contains(t, diff, `"codi2 hook claude PreToolUse"`)
	require.NoError(t, hooks.Apply(changes))

	var got struct {
		Permissions map[string]any `json:"permissions"`
		Model       string         `json:"model"`
		Hooks       map[string][]struct {
			Matcher string `json:"matcher"`
			Hooks   []struct{ Type, Command string }
		} `json:"hooks"`
	}
	b, err := os.ReadFile(settings)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, "opus", got.Model)
	assert.NotNil(t, got.Permissions)
	require.Len(t, got.Hooks["PostToolUse"], 2, "the user's hook is kept beside ours")
	assert.Equal(t, "gofmt -w \"$CLAUDE_FILE\"", got.Hooks["PostToolUse"][0].Hooks[0].Command)
	require.Len(t, got.Hooks["PreToolUse"], 2)
	assert.Equal(t, "Edit|Write|MultiEdit|NotebookEdit", got.Hooks["PreToolUse"][1].Matcher)
	for _, ev := range []string{"SessionStart", "UserPromptSubmit", "Stop"} {
		require.Len(t, got.Hooks[ev], 1, ev)
		assert.Equal(t, "codi2 hook claude "+ev, got.Hooks[ev][0].Hooks[0].Command)
	}
	assert.True(t, strings.Index(string(b), `"permissions"`) < strings.Index(string(b), `"model"`), "members keep their order")
	mcp, err := os.ReadFile(filepath.Join(dir, ".mcp.json"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"mcpServers":{"other":{"command":"x"},"codi2":{"command":"codi2","args":["mcp"]}}}`, string(mcp))

	again, err := hooks.Install(dir, "")
	require.NoError(t, err)
	assert.Empty(t, again, "a second install changes nothing")

	changes, err = hooks.Uninstall(dir, "")
	require.NoError(t, err)
	require.NoError(t, hooks.Apply(changes))
	b, err = os.ReadFile(settings)
	require.NoError(t, err)
	assert.JSONEq(t, existingSettings, string(b), "uninstall removes exactly what install added")
	assert.Contains(t, string(b), `"matcher": "Bash",`, "the user's group keeps its members' order")
	mcp, err = os.ReadFile(filepath.Join(dir, ".mcp.json"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"mcpServers":{"other":{"command":"x"}}}`, string(mcp))
	again, err = hooks.Uninstall(dir, "")
	require.NoError(t, err)
	assert.Empty(t, again)
}

func TestInstall_FreshDirAndErrors(t *testing.T) {
	dir := t.TempDir()
	changes, err := hooks.Install(dir, "/usr/local/bin/codi2")
	require.NoError(t, err)
	require.NoError(t, hooks.Apply(changes))
	b, err := os.ReadFile(filepath.Join(dir, ".claude", "settings.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"/usr/local/bin/codi2 hook claude Stop"`)
	changes, err = hooks.Uninstall(dir, "/usr/local/bin/codi2")
	require.NoError(t, err)
	require.NoError(t, hooks.Apply(changes))
	b, err = os.ReadFile(filepath.Join(dir, ".claude", "settings.json"))
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, string(b))

	empty := t.TempDir()
	changes, err = hooks.Uninstall(empty, "")
	require.NoError(t, err)
	assert.Empty(t, changes, "nothing there, nothing written")

	for name, content := range map[string]string{
		"not an object":  `[1]`,
		"bad json":       `{"hooks":`,
		"hooks not obj":  `{"hooks":[1]}`,
		"event not list": `{"hooks":{"Stop":{"a":1}}}`,
		"trailing data":  `{} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(d, ".claude"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(d, ".claude", "settings.json"), []byte(content), 0o644))
			_, err := hooks.Install(d, "")
			assert.Error(t, err)
			assert.Contains(t, err.Error(), "settings.json")
		})
	}
	d := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(d, ".mcp.json"), []byte(`{"mcpServers":[]}`), 0o644))
	_, err = hooks.Install(d, "")
	assert.ErrorContains(t, err, ".mcp.json")
}
