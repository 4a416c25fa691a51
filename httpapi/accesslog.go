package httpapi

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// AccessLog wraps next so that every answered request is logged at info,
// one line in the server's zerolog format (method, path, status, bytes,
// duration_ms, remote; a feed is logged when it ends), and counted in m
// when m is not nil. Safe for concurrent use.
func AccessLog(log zerolog.Logger, m *Metrics, next http.Handler) http.Handler {
	log = log.With().Str("component", "http").Logger()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if m != nil {
			m.observeRequest(rec.status)
		}
		log.Info().Str("method", r.Method).Str("path", r.URL.RequestURI()).Int("status", rec.status).
			Int64("bytes", rec.bytes).Float64("duration_ms", float64(time.Since(start).Microseconds())/1000).
			Str("remote", r.RemoteAddr).Msg("http request")
	})
}

// recorder notes the status and size of an answer; it passes Flush on, so
// the feed streams through it.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush implements http.Flusher when the wrapped writer does.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the wrapped writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
