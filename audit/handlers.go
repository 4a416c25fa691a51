package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codi2/codi2/internal/strictjson"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go/micro"
)

// replyHeadroom is kept free in every reply for the micro headers and
// the JSON around the records.
const replyHeadroom = 4096

// addService registers the micro service codi-audit with its three
// endpoints on the contract subjects.
func (s *Service) addService() (micro.Service, error) {
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "codi2 audit log: query, verify, status",
	})
	if err != nil {
		return nil, fmt.Errorf("audit: micro service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		h             func(micro.Request)
	}{
		{"query", subjects.AuditQuery, s.handleQuery},
		{"verify", subjects.AuditVerify, s.handleVerify},
		{"status", subjects.AuditStatus, s.handleStatus},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, s.admit(e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("audit: endpoint %s: %w", e.name, err)
		}
	}
	return svc, nil
}

// stopService stops the micro service, cancels the handlers that are still
// running and waits for them.
func (s *Service) stopService(svc micro.Service) {
	if err := svc.Stop(); err != nil {
		s.log.Warn().Err(err).Msg("stop micro service")
	}
	s.hmu.Lock()
	s.hstopped = true
	s.hmu.Unlock()
	s.hcancel()
	s.hwg.Wait()
}

// admit runs h unless the service is stopping, so that Run can wait for
// every handler it let in.
func (s *Service) admit(h func(micro.Request)) micro.HandlerFunc {
	return func(r micro.Request) {
		s.hmu.Lock()
		if s.hstopped {
			s.hmu.Unlock()
			_ = r.Error("503", "audit service stopping", nil)
			return
		}
		s.hwg.Add(1)
		s.hmu.Unlock()
		defer s.hwg.Done()
		h(r)
	}
}

// fail answers a request whose work failed: 503 when Run's stop cancelled
// it (the contract's answer while stopping), 500 otherwise.
func (s *Service) fail(r micro.Request, op string, err error) {
	if s.hctx.Err() != nil {
		_ = r.Error("503", "audit service stopping", nil)
		return
	}
	s.log.Error().Err(err).Msg(op)
	_ = r.Error("500", err.Error(), nil)
}

func (s *Service) requestCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.hctx, s.cfg.RequestTimeout)
}

func (s *Service) handleQuery(r micro.Request) {
	q, err := parseQuery(r.Data(), time.Now())
	if err != nil {
		_ = r.Error("400", err.Error(), nil)
		return
	}
	ctx, cancel := s.requestCtx()
	defer cancel()
	reply, err := s.query(ctx, q, int(s.nc.MaxPayload())-replyHeadroom)
	if errors.Is(err, errBadQuery) {
		_ = r.Error("400", err.Error(), nil)
		return
	}
	if err != nil {
		s.fail(r, "query", err)
		return
	}
	_ = r.Respond(reply)
}

// parseVerify reads a verify request strictly (strictjson): an empty body
// is the whole log.
func parseVerify(data []byte) (VerifyRequest, error) {
	var req VerifyRequest
	if len(bytes.TrimSpace(data)) > 0 {
		if err := strictjson.Decode(data, &req); err != nil {
			return req, fmt.Errorf("verify: %w", err)
		}
	}
	if req.ToSeq != 0 && req.ToSeq < req.FromSeq {
		return req, fmt.Errorf("verify: to_seq %d is before from_seq %d", req.ToSeq, req.FromSeq)
	}
	return req, nil
}

func (s *Service) handleVerify(r micro.Request) {
	req, err := parseVerify(r.Data())
	if err != nil {
		_ = r.Error("400", err.Error(), nil)
		return
	}
	ctx, cancel := s.requestCtx()
	defer cancel()
	res, err := s.verify(ctx, req)
	if err != nil {
		s.fail(r, "verify", err)
		return
	}
	if !res.OK && !res.Empty {
		s.log.Warn().Uint64("seq", res.BadSeq).Str("reason", res.Reason).Msg("verify found a bad record")
	}
	_ = r.RespondJSON(res)
}

func (s *Service) handleStatus(r micro.Request) {
	_ = r.RespondJSON(s.Status())
}
