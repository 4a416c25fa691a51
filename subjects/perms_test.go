package subjects

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
)

// The permission patterns are valid NATS subjects and match what the
// builders make for the agent they name, and nothing of another.
func TestPermissionPatterns(t *testing.T) {
	own := []string{
		must(Msg("agent-2", "agent-1", "task", "assign")),
		must(RPC("agent-2", "agent-1", "ping")),
		must(StateCmd("task", "T-1", "agent-1")),
		must(AuditLog("agent-1", "file", "write")),
	}
	other := []string{
		must(Msg("agent-1", "agent-2", "task")),
		must(RPC("agent-1", "agent-2", "ping")),
		must(StateCmd("task", "T-1", "agent-2")),
		must(AuditLog("agent-2", "file")),
		must(StateEvt("task", "T-1")),
		StateCommitted,
	}
	pub := AgentPublish("agent-1")
	for _, s := range own {
		assert.True(t, matchesAny(pub, s), s)
	}
	for _, s := range other {
		assert.False(t, matchesAny(pub, s), s)
	}
	sub := AgentSubscribe("agent-1")
	assert.True(t, matchesAny(sub, must(Msg("agent-1", "agent-2", "x"))))
	assert.True(t, matchesAny(sub, must(Msg(All, "agent-2", "x"))))
	assert.True(t, matchesAny(sub, must(RPC("agent-1", "agent-2", "x"))))
	assert.False(t, matchesAny(sub, must(Msg("agent-3", "agent-2", "x"))))
	assert.True(t, matchesAny(sub, "codi.msg.agent-1"), "the bare subjects an inbox also takes")
	assert.True(t, matchesAny(sub, "codi.msg.all"))
	assert.False(t, matchesAny(sub, "codi.msg.agent-3"))
	assert.False(t, matchesAny(pub, "codi.msg.agent-2"), "no mail without a sender")
	assert.Equal(t, []string{StateEvtWildcard}, ObserverSubscribe())
	assert.Equal(t, "_INBOX.agent-1", InboxPrefix("agent-1"))
	for _, p := range append(append(append(pub, sub...), ReadRequests...), Watermarks...) {
		assert.True(t, server.IsValidSubject(p), p)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func matchesAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if server.SubjectsCollide(p, subject) {
			return true
		}
	}
	return false
}
