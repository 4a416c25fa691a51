package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/codi2/codi2/subjects"
)

// Error codes of the micro convention used by the endpoints.
const (
	codeBadRequest  = "400"
	codeNotFound    = "404"
	codeInternal    = "500"
	codeUnavailable = "503"
	codeTimeout     = "504"
)

// readTimeout bounds one store read of a request.
const readTimeout = 5 * time.Second

// startMicro registers the codi-state micro service and its endpoints.
func (s *Service) startMicro() (micro.Service, error) {
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "codi2 state store: records by kind and id, leases, commit watermark",
	})
	if err != nil {
		return nil, fmt.Errorf("state: micro service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		h             micro.HandlerFunc
	}{
		{"get", subjects.StateGetWildcard, s.handleGet},
		{"list", subjects.StateListWildcard, s.handleList},
		{"status", subjects.StateStatus, s.handleStatus},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, e.h, micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("state: micro endpoint %s: %w", e.name, err)
		}
	}
	// The endpoints answer once the server has their subscriptions.
	if err := s.nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("state: micro service: %w", err)
	}
	return svc, nil
}

// enter admits a request unless Run is stopping; the caller then calls
// s.reqs.Done when the request (and any wait it started) is answered.
func (s *Service) enter(req micro.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		respondError(req, codeUnavailable, "state service is stopping")
		return false
	}
	s.reqs.Add(1)
	return true
}

func respondError(req micro.Request, code, msg string) {
	_ = req.Error(code, msg, nil)
}

// decodeBody decodes an optional JSON request body strictly (see
// strictjson.Decode).
func decodeBody(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return strictjson.Decode(data, v)
}

// parseRequestSubject parses the subject of a get or list request, whose
// endpoints also receive subjects with too many tokens. The error says
// what is wrong and, for an id split by '.', how to escape it.
func parseRequestSubject(subject string, want subjects.Type) (subjects.Subject, error) {
	p, err := subjects.Parse(subject)
	if err == nil && p.Type != want {
		err = fmt.Errorf("%q is not a %s subject", subject, want)
	}
	if err == nil {
		return p, nil
	}
	msg := err.Error()
	if hint := subjects.Hint(subject); hint != "" {
		msg += "; " + hint
	}
	return p, errors.New(msg)
}

// handleGet answers codi.state.get.<kind>.<id>. A request whose min_seq is
// ahead of the watermark waits on a goroutine of its own, owned by the
// Service, so that the endpoint keeps answering other requests meanwhile.
func (s *Service) handleGet(req micro.Request) {
	if !s.enter(req) {
		return
	}
	p, err := parseRequestSubject(req.Subject(), subjects.TypeStateGet)
	var body getRequest
	if err == nil {
		err = decodeBody(req.Data(), &body)
	}
	wait := s.cfg.GetWait
	if err == nil && body.WaitMS != nil {
		switch ms := *body.WaitMS; {
		case ms < 0:
			err = fmt.Errorf("wait_ms %d is negative", ms)
		default:
			wait = min(time.Duration(ms)*time.Millisecond, s.cfg.MaxGetWait)
		}
	}
	if err != nil {
		respondError(req, codeBadRequest, "bad get request: "+err.Error())
		s.reqs.Done()
		return
	}
	if body.MinSeq <= s.Watermark() {
		s.serveGet(req, p.Kind, p.ID)
		s.reqs.Done()
		return
	}
	go func() {
		defer s.reqs.Done()
		switch err := s.waitFor(body.MinSeq, wait); {
		case errors.Is(err, ErrTimeout):
			respondError(req, codeTimeout, fmt.Sprintf("watermark %d did not reach min_seq %d within %v (wait_ms asks for up to %v)",
				s.Watermark(), body.MinSeq, wait, s.cfg.MaxGetWait))
		case err != nil:
			respondError(req, codeUnavailable, "state service is stopping")
		default:
			s.serveGet(req, p.Kind, p.ID)
		}
	}()
}

// waitFor waits until the watermark reaches seq, wait passes (ErrTimeout)
// or Run stops (ErrUnavailable).
func (s *Service) waitFor(seq uint64, wait time.Duration) error {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ch := s.advanced
		s.mu.Unlock()
		if s.watermark.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return ErrTimeout
		case <-s.stop:
			return ErrUnavailable
		}
	}
}

func (s *Service) serveGet(req micro.Request, kind, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	key := stateKey(kind, id)
	var (
		body []byte
		live bool
	)
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		body, live, err = openStored(key, v)
		return err
	})
	switch {
	case errors.Is(err, kv.ErrNotFound) || (err == nil && !live):
		respondError(req, codeNotFound, fmt.Sprintf("%s %s not found", kind, id))
	case err != nil:
		s.readFailed(req, "get", err)
	default:
		_ = req.Respond(body)
	}
}

// readFailed logs a failed store read at error and answers 500 with what
// failed: a corrupt record or store page is named (ErrCorrupt,
// kv.ErrCorrupt), anything else is "store read failed".
func (s *Service) readFailed(req micro.Request, op string, err error) {
	s.log.Error().Err(err).Str("subject", req.Subject()).Msg(op)
	msg := "store read failed"
	if errors.Is(err, ErrCorrupt) || errors.Is(err, kv.ErrCorrupt) {
		msg = err.Error()
	}
	respondError(req, codeInternal, msg)
}

// handleList answers codi.state.list.<kind>.
func (s *Service) handleList(req micro.Request) {
	if !s.enter(req) {
		return
	}
	defer s.reqs.Done()
	p, err := parseRequestSubject(req.Subject(), subjects.TypeStateList)
	var o ListQuery // ListOptions and the filters (filter.go)
	if err == nil {
		err = decodeBody(req.Data(), &o)
	}
	var f filter
	if err == nil && o.filtered() {
		f, err = parseFilter(o, time.Now())
	}
	switch {
	case err != nil:
	case o.Limit < 0:
		err = fmt.Errorf("limit %d is negative", o.Limit)
	case o.After != "":
		if terr := subjects.ValidToken(o.After); terr != nil {
			err = fmt.Errorf("after: %w", terr)
		}
	}
	if err != nil {
		respondError(req, codeBadRequest, "bad list request: "+err.Error())
		return
	}
	var body []byte
	if o.filtered() {
		body, err = s.listFiltered(p.Kind, o, f)
	} else {
		body, err = s.list(p.Kind, o.options())
	}
	if err != nil {
		s.readFailed(req, "list", err)
		return
	}
	_ = req.Respond(body)
}

// list reads a page of live records of kind and encodes the reply, keeping
// it within the connection's maximum payload.
func (s *Service) list(kind string, o ListOptions) ([]byte, error) {
	limit := o.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, s.cfg.MaxListLimit)
	begin, end := s.listRange(kind, o)
	maxBytes := int(s.nc.MaxPayload()) - 1024
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	var (
		recs   [][]byte
		lastID string
		more   bool
	)
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		recs, lastID, more = recs[:0], "", false
		from, size := begin, 0
		for {
			kvs, err := tx.GetRange(from, end, kv.RangeOptions{Limit: limit + 1})
			if err != nil {
				return err
			}
			for _, p := range kvs {
				from = append(p.Key, 0x00)
				body, live, err := openStored(p.Key, p.Value)
				if err != nil {
					return err
				}
				if !live {
					continue
				}
				if len(recs) == limit || size+len(body) > maxBytes {
					more = true
					return nil
				}
				t, err := kv.Unpack(p.Key)
				if err != nil || len(t) != 3 {
					return fmt.Errorf("state: corrupt record key: %v", err)
				}
				lastID, _ = t[2].(string)
				recs = append(recs, body)
				size += len(body)
			}
			if len(kvs) <= limit {
				return nil
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return encodeList(recs, lastID, more), nil
}

// handleStatus answers codi.state.status with the watermark.
func (s *Service) handleStatus(req micro.Request) {
	if !s.enter(req) {
		return
	}
	defer s.reqs.Done()
	_ = req.Respond(mustJSON(watermark{StreamSeq: s.Watermark()}))
}
