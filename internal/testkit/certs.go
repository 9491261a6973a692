package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// LoopbackNames are the names a loopback broker certificate is valid for:
// the addresses kfake listens on and localhost.
var LoopbackNames = []string{"127.0.0.1", "::1", "localhost"}

// CA is a certificate authority made for one test, with an ECDSA P-256 key.
type CA struct {
	// Cert is the self-signed CA certificate.
	Cert *x509.Certificate
	// PEM is Cert encoded as a PEM block, as a ca_file holds it.
	PEM []byte
	key *ecdsa.PrivateKey
}

// NewCA creates a certificate authority whose subject is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA: %v", err)
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerCert issues a server certificate valid for names (IP addresses or
// DNS names); a broker certificate usually gets LoopbackNames.
func (ca *CA) ServerCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	return ca.issue(t, x509.ExtKeyUsageServerAuth, names[0], names)
}

// ClientCert issues a client certificate for mutual TLS whose subject is
// name.
func (ca *CA) ClientCert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return ca.issue(t, x509.ExtKeyUsageClientAuth, name, nil)
}

func (ca *CA) issue(t testing.TB, usage x509.ExtKeyUsage, subject string, names []string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: subject},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("issue certificate for %s: %v", subject, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate for %s: %v", subject, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// WriteFile writes the CA's PEM to dir/name (replacing it, so tests can
// rotate a ca_file) and returns the path.
func (ca *CA) WriteFile(t testing.TB, dir, name string) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, name), ca.PEM)
}

// WriteKeyPair writes cert and its key as PEM to dir/name.crt and
// dir/name.key (replacing them, so tests can rotate a client certificate)
// and returns both paths.
func WriteKeyPair(t testing.TB, cert tls.Certificate, dir, name string) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatalf("encode key: %v", err)
	}
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	certFile = writeFile(t, filepath.Join(dir, name+".crt"), certPEM)
	keyFile = writeFile(t, filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

// BrokerTLS returns the listener configuration of a TLS broker serving
// cert. With clientCA set, the broker requires client certificates signed
// by it (mutual TLS).
func BrokerTLS(cert tls.Certificate, clientCA *CA) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = clientCA.Pool()
	}
	return c
}

// writeFile writes data to path through a temporary file and a rename, as
// certificate rotation tools do, so readers never see a half-written file.
func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
