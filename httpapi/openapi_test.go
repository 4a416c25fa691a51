package httpapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// servedByServe are the routes `codi2 serve` answers itself, in front of
// the Handler, which the document describes too.
var servedByServe = []string{"GET /healthz", "GET /readyz"}

// TestOpenAPI_MatchesRoutes checks that every route the mux serves is in
// openapi.json, and every operation there is served.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	data, err := assets.ReadFile("openapi.json")
	require.NoError(t, err)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			assert.NotEmpty(t, op["responses"], "%s %s has no responses", method, path)
			assert.NotEmpty(t, op["summary"], "%s %s has no summary", method, path)
		}
	}
	served := append(Routes(), servedByServe...)
	slices.Sort(documented)
	slices.Sort(served)
	assert.Equal(t, served, documented)
	// Query parameters are the ones the handlers take.
	wantParams := map[string][]string{
		"GET /v1/state/{kind}/{id}": getParams, "GET /v1/audit": auditQueryParams, "GET /v1/audit/verify": verifyParams,
		"GET /v1/agents": agentsParams, "GET /v1/events": eventsParams, "GET /v1/status": nil, "GET /v1/audit/status": nil,
		"GET /v1/state/{kind}": {"prefix", "after", "limit", "updated_after", "updated_before", "held", "where"}, "GET /v1/reservations": {"prefix", "after", "limit"},
	}
	for route, want := range wantParams {
		method, path, _ := strings.Cut(route, " ")
		op := doc.Paths[path][strings.ToLower(method)]
		var got []string
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			if pm := p.(map[string]any); pm["in"] == "query" {
				got = append(got, pm["name"].(string))
			}
		}
		assert.ElementsMatch(t, want, got, route)
	}
	// Path parameters are declared.
	for _, r := range routes {
		_, path, _ := strings.Cut(r.pattern, " ")
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") {
				assert.Contains(t, string(data), `"name": "`+strings.Trim(seg, "{}")+`"`, r.pattern)
			}
		}
	}
}
