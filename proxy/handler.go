package proxy

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/httpauth"
)

// ServeHTTP serves the OCI distribution pull API. Writes are refused: the proxy is a read-only view.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	var r route
	var err error
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		err = &apiError{status: http.StatusMethodNotAllowed, code: codeUnsupported,
			message: "portcullis is a read-only pull-through proxy: " + req.Method + " is not supported"}
	} else {
		r, err = p.parseRoute(req)
		// A scanner pulling the image it was asked to scan presents its credential as a bearer token.
		r.bearer, _ = httpauth.Bearer(req.Header.Get("Authorization"))
	}
	defer func() {
		p.metrics.requests.WithLabelValues(r.kind.String(), req.Method, strconv.Itoa(sw.status())).Inc()
		p.metrics.latency.WithLabelValues(r.kind.String()).Observe(time.Since(start).Seconds())
	}()
	if err == nil {
		err = p.dispatch(w, req, r)
	}
	if err != nil {
		ae := toAPIError(err, r.kind, r)
		if ae.status >= 500 {
			p.log.Warn("request failed", "method", req.Method, "path", req.URL.Path, "ns", r.ns, "status", ae.status, "error", err)
		} else {
			p.log.Debug("request refused", "method", req.Method, "path", req.URL.Path, "ns", r.ns, "status", ae.status, "error", err)
		}
		if sw.wrote {
			return // too late for an error body
		}
		if ae.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", "GET, HEAD")
		}
		writeError(w, req, ae)
	}
}

func (p *Proxy) dispatch(w http.ResponseWriter, req *http.Request, r route) error {
	switch r.kind {
	case kindBase:
		return writeJSON(w, req, "application/json", struct{}{})
	case kindManifest:
		return p.serveManifest(w, req, r)
	case kindBlob:
		return p.serveBlob(w, req, r)
	case kindTags:
		return p.serveTags(w, req, r)
	case kindReferrers:
		return p.serveReferrers(w, req, r)
	}
	return errRouteUnknown
}

// statusWriter remembers the status sent.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.code, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// ReadFrom keeps the connection's own ReadFrom (sendfile, for a blob streamed from a file) reachable.
func (s *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if !s.wrote {
		s.code, s.wrote = http.StatusOK, true
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, r)
}

func (s *statusWriter) status() int {
	if !s.wrote {
		return http.StatusOK
	}
	return s.code
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
