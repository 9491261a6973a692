package server

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/gobwas/ws"
)

// An HTTP/2 WebSocket (RFC 8441 extended CONNECT) has no Sec-WebSocket-Key:
// the key and its Sec-WebSocket-Accept belong to the HTTP/1.1 handshake
// only. Envoy forwards such a stream to an HTTP/1.1 upstream as a GET with
// Upgrade: websocket and Connection: Upgrade and nothing else added
// (Utility::transformUpgradeRequestFromH2toH1, source/common/http/utility.cc
// in Envoy v1.39.1), and turns the upstream's 101 into the client's 200
// without looking at Sec-WebSocket-Accept. Options.KeylessUpgrade lets the
// session socket, which only Envoy reaches, accept that form.

// errKeylessHandshake is why a keyless upgrade was refused with 400.
var errKeylessHandshake = errors.New("keyless WebSocket upgrade: want GET, Connection: Upgrade and Sec-WebSocket-Version: 13")

// upgrade completes r's WebSocket handshake: gobwas/ws's HTTP/1.1
// handshake, or, with Options.KeylessUpgrade and no Sec-WebSocket-Key, the
// keyless form. On an error the client has been answered (400).
func (s *Server) upgrade(r *http.Request, w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	if s.opts.KeylessUpgrade && r.Header.Get("Sec-WebSocket-Key") == "" {
		return upgradeKeyless(r, w)
	}
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	return conn, rw, err
}

// upgradeKeyless answers 101 to a WebSocket upgrade that carries no key,
// after the checks the keyed handshake makes of everything else.
func upgradeKeyless(r *http.Request, w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" {
		http.Error(w, errKeylessHandshake.Error(), http.StatusBadRequest)
		return nil, nil, errKeylessHandshake
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be upgraded", http.StatusInternalServerError)
		return nil, nil, errors.New("keyless WebSocket upgrade: the response writer cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, rw, nil
}

// headerHasToken reports whether a comma-separated header lists token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
