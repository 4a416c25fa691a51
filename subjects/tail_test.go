package subjects

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTail(t *testing.T) {
	assert.Equal(t, "task.assign", Tail("codi.msg.a.b.task.assign", 4))
	assert.Equal(t, "codi.msg", Tail("codi.msg", 0))
	assert.Equal(t, "", Tail("codi.msg.a.b", 4))
	assert.Equal(t, "", Tail("codi.msg.a", 4))
}

func TestStateEvtKind(t *testing.T) {
	assert.Equal(t, "codi.state.evt.task.*", StateEvtKind("task"))
}

func TestMsgInboxFilters(t *testing.T) {
	assert.Equal(t, []string{"codi.msg.a.>", "codi.msg.all.>", "codi.msg.a", "codi.msg.all"}, MsgInboxFilters("a"))
}

func TestInboxRequests(t *testing.T) {
	assert.Equal(t, "codi.inbox.open.a", InboxOpen("a"))
	assert.Equal(t, "codi.inbox.peek.a", InboxPeek("a"))
	assert.Equal(t, "a", Token(InboxOpen("a"), 3))
}
