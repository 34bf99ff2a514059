package controlplane

import "fmt"

// State is the component state an operator sets on a link.
type State uint8

// Component states. The values are carried in adverts; do not renumber.
const (
	// InService links carry traffic when they are usable.
	InService State = iota
	// OutOfService links carry nothing, not even static routes: the
	// operator has drained or disabled them.
	OutOfService
	// Standby links are used only when no path exists without them: SPF
	// adds StandbyPenalty to their cost.
	Standby
	// Reserved links are kept for operator-pinned static routes: SPF
	// ignores them, a static route may use them.
	Reserved
)

var stateNames = [...]string{
	InService:    "in_service",
	OutOfService: "out_of_service",
	Standby:      "standby",
	Reserved:     "reserved",
}

// String returns the state's config and API name, such as "in_service".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Valid reports whether s is one of the four states.
func (s State) Valid() bool { return int(s) < len(stateNames) }

// ParseState parses a state name as String returns it.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("controlplane: unknown component state %q, want in_service, out_of_service, standby or reserved", name)
}

// MarshalText implements encoding.TextMarshaler, so that JSON and YAML carry
// the name.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("controlplane: invalid component state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
