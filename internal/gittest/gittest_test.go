package gittest_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/gittest"
)

func TestRepo(t *testing.T) {
	root, project := gittest.Repo(t)
	assert.True(t, filepath.IsAbs(root))
	assert.Regexp(t, `^git-[0-9a-f]{12}$`, project)
	assert.Contains(t, gittest.Run(t, root, "log", "--format=%an %s"), "t first")
	out, err := gittest.Try(root, []string{"GIT_AUTHOR_NAME=other"}, "commit", "-q", "--allow-empty", "-m", "second")
	require.NoError(t, err, out)
	assert.True(t, strings.HasPrefix(gittest.Run(t, root, "log", "-1", "--format=%an"), "other"))
	_, err = gittest.Try(root, nil, "no-such-command")
	require.Error(t, err)

	empty := gittest.Init(t)
	_, err = gittest.Try(empty, nil, "rev-parse", "HEAD")
	require.Error(t, err, "no commits")
}
