package filewatch

import (
	"context"
	"encoding/json"

	"github.com/codi2/codi2/audit"
)

// AuditCategory is the audit category of changes: events are
// codi.audit.log.<agent>.file.<op>.
const AuditCategory = "file"

// AuditSink returns a Sink that publishes each Change as the audit event
// codi.audit.log.<agent>.file.<op> with Nats-Msg-Id Change.ID, so a retry
// is recorded once (the audit log dedupes a source's ids for ever). With
// committed it returns only once the log has committed the event (the
// watermark), else at the PubAck. Safe for concurrent use.
func AuditSink(ac *audit.Client, committed bool) Sink {
	return func(ctx context.Context, c Change) error {
		data, err := json.Marshal(c)
		if err != nil {
			return err
		}
		opts := []audit.LogOption{audit.WithTokens(c.Op), audit.WithMsgID(c.ID)}
		if committed {
			_, err = ac.LogAndWait(ctx, c.Agent, AuditCategory, data, opts...)
		} else {
			_, err = ac.Log(ctx, c.Agent, AuditCategory, data, opts...)
		}
		return err
	}
}
