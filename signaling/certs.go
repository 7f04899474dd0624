package signaling

import (
	"crypto/tls"
	"os"
	"sync"
	"time"
)

// CertificateLoader returns a tls.Config GetCertificate for a PEM pair that
// re-reads the files when they change (checked at most every 5 s), so a
// renewed certificate is served without a restart. It fails if the pair
// cannot be loaded now.
func CertificateLoader(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, every: 5 * time.Second}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l.get, nil
}

type certLoader struct {
	certFile, keyFile string
	every             time.Duration // how often the files are checked

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func (l *certLoader) load() error {
	stamp := [2]time.Time{modTime(l.certFile), modTime(l.keyFile)}
	c, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return err
	}
	l.cert, l.stamp = &c, stamp
	return nil
}

func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.checked) >= l.every {
		l.checked = now
		if [2]time.Time{modTime(l.certFile), modTime(l.keyFile)} != l.stamp {
			// A half-written pair fails to load; keep the old one until
			// both files are complete.
			_ = l.load()
		}
	}
	return l.cert, nil
}
