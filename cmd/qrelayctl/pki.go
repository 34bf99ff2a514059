package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

const (
	pkiUsage = "qrelayctl pki [--dir DIR] [--nodes a,b,c] [--saes sae-1,sae-2] [--operator NAME] [--hosts 127.0.0.1,localhost] [--validity 8760h] [--force]"
	pkiWhat  = `Make a lab PKI in DIR: a CA (ca.pem, ca.key), and for each node node-<id>.pem/.key,
for each SAE sae-<id>.pem/.key, and for the operator operator.pem/.key. Keys are
readable by their owner only. If DIR already holds ca.pem and ca.key, that CA
issues the certificates named and nothing else. Existing files are never
overwritten without --force (which still keeps the CA).`
	caName = "qrelay lab CA"
	// caLifetimes is how many times longer than its certificates a new CA
	// lives, so that certificates added later are still inside it.
	caLifetimes = 10
)

// toIssue is one certificate and key pki writes.
type toIssue struct {
	kind       pki.Kind
	id         string
	hosts      []string
	cert, key  string // file paths
	what, note string // for the report
}

func runPKI(_ context.Context, args []string, stdout io.Writer) error {
	fset := flag.NewFlagSet("pki", flag.ContinueOnError)
	dir := fset.String("dir", "pki", "`directory` to write to (made if missing); an existing CA in it is reused")
	nodes := fset.String("nodes", "", "comma-separated node `IDs`")
	saes := fset.String("saes", "", "comma-separated SAE `IDs`")
	operator := fset.String("operator", "", "operator `ID` for the admin API (default admin when making a new CA, none when reusing one)")
	hosts := fset.String("hosts", "127.0.0.1,localhost", "comma-separated host names and IP addresses node certificates are valid for")
	validity := fset.Duration("validity", 365*24*time.Hour, "how long the certificates are valid")
	force := fset.Bool("force", false, "overwrite existing certificates and keys (the CA is kept)")
	if _, err := parseArgs(fset, args, pkiUsage); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout, fset, pkiUsage, pkiWhat)
			return nil
		}
		return err
	}
	if *validity <= 0 {
		return usageError{fmt.Sprintf("--validity %v: want a positive duration such as 8760h", *validity)}
	}
	nodeIDs, err := idList("--nodes", *nodes)
	if err != nil {
		return err
	}
	saeIDs, err := idList("--saes", *saes)
	if err != nil {
		return err
	}
	hostList, err := splitList(*hosts)
	if err != nil {
		return usageError{"--hosts: " + err.Error()}
	}

	caCert, caKey := filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca.key")
	ca, err := loadCA(caCert, caKey)
	if err != nil {
		return err
	}
	newCA := ca == nil
	if *operator == "" && newCA {
		*operator = "admin"
	}
	if *operator != "" {
		if err := pki.ValidID(*operator); err != nil {
			return usageError{fmt.Sprintf("--operator %q: %v", *operator, err)}
		}
	}

	var todo []toIssue
	for _, id := range nodeIDs {
		note := "no host names"
		if len(hostList) > 0 {
			note = "valid for " + strings.Join(hostList, ", ")
		}
		todo = append(todo, toIssue{kind: pki.Node, id: id, hosts: hostList, cert: filepath.Join(*dir, "node-"+id+".pem"), key: filepath.Join(*dir, "node-"+id+".key"), what: "node " + id, note: note})
	}
	for _, id := range saeIDs {
		todo = append(todo, toIssue{kind: pki.SAE, id: id, cert: filepath.Join(*dir, "sae-"+id+".pem"), key: filepath.Join(*dir, "sae-"+id+".key"), what: "SAE " + id})
	}
	if *operator != "" {
		todo = append(todo, toIssue{kind: pki.Operator, id: *operator, cert: filepath.Join(*dir, "operator.pem"), key: filepath.Join(*dir, "operator.key"), what: "operator " + *operator, note: "for qrelayctl"})
	}
	if len(todo) == 0 {
		return usageError{fmt.Sprintf("nothing to issue: %s already holds a CA; name certificates to add with --nodes, --saes or --operator", *dir)}
	}
	if !*force {
		var exist []string
		for _, c := range todo {
			for _, p := range []string{c.cert, c.key} {
				if _, err := os.Lstat(p); err == nil {
					exist = append(exist, p)
				}
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("refusing to overwrite %s: remove them, leave out their IDs, or pass --force", strings.Join(exist, ", "))
		}
	}

	if newCA {
		if ca, err = pki.NewCA(caName, caLifetimes*(*validity)); err != nil {
			return err
		}
	} else if end := time.Now().Add(*validity); end.After(ca.Cert.NotAfter) {
		return usageError{fmt.Sprintf("--validity %v: the certificates would outlive the CA in %s, which expires %s; use a shorter --validity or a new directory",
			*validity, *dir, ca.Cert.NotAfter.Format(time.DateOnly))}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if newCA {
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		// A fresh CA never overwrites: loadCA found neither file.
		if err := writeFile(caKey, keyPEM, 0o600, false); err != nil {
			return err
		}
		if err := writeFile(caCert, ca.CertPEM, 0o644, false); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s: %s, valid until %s; keep ca.key secret\n", caCert, caKey, caName, ca.Cert.NotAfter.Format(time.DateOnly))
	} else {
		fmt.Fprintf(stdout, "using the CA in %s (%s, valid until %s)\n", *dir, ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format(time.DateOnly))
	}
	for _, c := range todo {
		iss, err := ca.Issue(c.kind, c.id, *validity, c.hosts...)
		if err != nil {
			return err
		}
		if err := writeFile(c.key, iss.KeyPEM, 0o600, *force); err != nil {
			return err
		}
		if err := writeFile(c.cert, iss.CertPEM, 0o644, *force); err != nil {
			return err
		}
		line := fmt.Sprintf("wrote %s and %s: %s", c.cert, c.key, c.what)
		if c.note != "" {
			line += ", " + c.note
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// loadCA loads the CA in certFile and keyFile: nil if neither exists, an
// error if only one does or they do not load.
func loadCA(certFile, keyFile string) (*pki.CA, error) {
	certPEM, certErr := os.ReadFile(certFile)
	keyPEM, keyErr := os.ReadFile(keyFile)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s exists but %s does not: restore the CA key, or start a new CA in another directory", certFile, keyFile)
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s exists but %s does not: restore the CA certificate, or start a new CA in another directory", keyFile, certFile)
	case certErr != nil:
		return nil, certErr
	case keyErr != nil:
		return nil, keyErr
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the CA in %s: %w", filepath.Dir(certFile), err)
	}
	return ca, nil
}

// writeFile writes data to path with mode perm. Unless overwrite, it fails
// if path exists (O_EXCL, so no race turns it into an overwrite); an
// overwritten file gets perm too, whatever mode it had.
func writeFile(path string, data []byte, perm os.FileMode, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// idList splits a comma-separated list of IDs and checks each.
func idList(flagName, s string) ([]string, error) {
	ids, err := splitList(s)
	if err != nil {
		return nil, usageError{flagName + ": " + err.Error()}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := pki.ValidID(id); err != nil {
			return nil, usageError{fmt.Sprintf("%s: ID %q: %v", flagName, id, err)}
		}
		if seen[id] {
			return nil, usageError{fmt.Sprintf("%s: ID %q given twice", flagName, id)}
		}
		seen[id] = true
	}
	return ids, nil
}

// splitList splits a comma-separated list; empty input is an empty list.
func splitList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" {
			return nil, fmt.Errorf("empty item %d in %q", i+1, s)
		}
	}
	return parts, nil
}
