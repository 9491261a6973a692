package client

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gobwas/ws"
)

// HandshakeError is a refused upgrade: the server answered the WebSocket
// upgrade request with Status instead of 101, and Message is the first line
// of its response body (why it refused, for example "topic not allowed").
// errors.As finds a ws.StatusError in it as well.
type HandshakeError struct {
	Status  int
	Message string
}

func (e *HandshakeError) Error() string {
	text := fmt.Sprintf("server refused the upgrade: %d %s", e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		text += ": " + e.Message
	}
	return text
}

// Unwrap returns the status as the ws.StatusError the dialer reports.
func (e *HandshakeError) Unwrap() error { return ws.StatusError(e.Status) }

// maxRefusalBytes bounds how much of a refusal's body is read.
const maxRefusalBytes = 4 << 10

// readRefusal reads the HTTP response resp (status line included) of a
// refused upgrade into a HandshakeError; a body that cannot be read leaves
// Message empty.
func readRefusal(status int, resp io.Reader) *HandshakeError {
	e := &HandshakeError{Status: status}
	r, err := http.ReadResponse(bufio.NewReader(io.LimitReader(resp, maxRefusalBytes)), nil)
	if err != nil {
		return e
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	e.Message = strings.TrimSpace(line)
	return e
}
