package filewatch

import (
	"encoding/base64"
	"time"
	"unicode/utf8"
)

// The kinds of Change, and the audit event category token after "file.".
const (
	OpCreate  = "create"
	OpWrite   = "write"
	OpRemove  = "remove"
	OpRename  = "rename"
	OpDropped = "dropped" // changes the queue could not hold (Dropped set)
)

// Change is one recorded change of one file: the payload of the audit event
// file.<op>. A plain value, safe to share.
type Change struct {
	// Op is OpCreate, OpWrite, OpRemove, OpRename (the file was moved away
	// from Path) or OpDropped.
	Op string `json:"op"`
	// Path is relative to the repository root, with slashes.
	Path string `json:"path,omitempty"`
	// To is a rename's new path, when the watcher saw the file arrive
	// there (a move within the tree); empty when it left the tree.
	To string `json:"to,omitempty"`
	// PathBase64 and ToBase64 are Path and To exactly (RFC 4648 base64)
	// when they are not valid UTF-8: JSON carries text only, and
	// encoding/json writes such bytes as U+FFFD, which would give two
	// files one path in the log. Set by the Watcher.
	PathBase64 string `json:"path_base64,omitempty"`
	ToBase64   string `json:"to_base64,omitempty"`
	// Agent is the agent the watcher records for.
	Agent string `json:"agent"`
	// Project is the repository's project name, when known.
	Project string `json:"project,omitempty"`
	// Size (bytes) and SHA256 (lower-case hex) of the file once its
	// writes settled, for create, write and a rename with To (absent with
	// Config.NoHash).
	// The hook of codi2 hook claude PostToolUse records the same hash, so
	// the two events of one edit are recognisable as one change.
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Time is when the change was decided (after the window), UTC.
	Time time.Time `json:"time"`
	// Dropped, First and Last describe an OpDropped change: how many
	// changes were dropped and when the first and last of them were.
	Dropped int        `json:"dropped,omitempty"`
	First   *time.Time `json:"first,omitempty"`
	Last    *time.Time `json:"last,omitempty"`

	// ID is unique per change of one watcher run (the Nats-Msg-Id).
	ID string `json:"-"`
	// Seen is when the watcher read the first kernel event of the change
	// (zero for a change found by a scan); for latency measurements.
	Seen time.Time `json:"-"`
}

// exactBytes sets PathBase64 and ToBase64 for a Path or To that is not
// valid UTF-8.
func (c *Change) exactBytes() {
	if !utf8.ValidString(c.Path) {
		c.PathBase64 = base64.StdEncoding.EncodeToString([]byte(c.Path))
	}
	if !utf8.ValidString(c.To) {
		c.ToBase64 = base64.StdEncoding.EncodeToString([]byte(c.To))
	}
}
