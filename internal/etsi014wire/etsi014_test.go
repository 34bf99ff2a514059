package etsi014wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// Each object as the standard writes it (the examples of clause 6, with
// every field present): it must decode strictly into its type, with no
// field left over, and encode back to the same JSON.
func TestObjectsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		json string
	}{
		{"Status", &Status{}, `{"source_KME_ID":"AAAABBBBCCCCDDDD","target_KME_ID":"EEEEFFFFGGGGHHHH",
			"master_SAE_ID":"IIIIJJJJKKKKLLLL","slave_SAE_ID":"MMMMNNNNOOOOPPPP","key_size":352,
			"stored_key_count":25000,"max_key_count":100000,"max_key_per_request":128,
			"max_key_size":1024,"min_key_size":64,"max_SAE_ID_count":0,"status_extension":{"x":1}}`},
		{"KeyRequest", &KeyRequest{}, `{"number":3,"size":1024,"additional_slave_SAE_IDs":["ABCDEFG","HIJKLMN"],
			"extension_mandatory":[{"abc_route_type":"direct"},{"abc_transfer_method":"qkd"}],
			"extension_optional":[{"abc_max_age":30000}]}`},
		{"KeyContainer", &KeyContainer{}, `{"keys":[
			{"key_ID":"bc490419-7d60-487f-adc1-4ddcc177c139","key_ID_extension":{"a":1},
			 "key":"wHHVxRwDJs3/bXd38GHP3oe4svTuRpZS0yCC7x4Ly+s=","key_extension":{"b":2}},
			{"key_ID":"0a782fb5-3434-48fe-aa4d-14f41d46cf92","key":"OeGMPxh1+2RpJpNCYixWHFLYRubpOKCw94FcCI7VdJA="}],
			"key_container_extension":{"c":3}}`},
		{"KeyIDs", &KeyIDs{}, `{"key_IDs":[{"key_ID":"bc490419-7d60-487f-adc1-4ddcc177c139","key_ID_extension":{"a":1}},
			{"key_ID":"0a782fb5-3434-48fe-aa4d-14f41d46cf92"}],"key_IDs_extension":{"b":2}}`},
		{"ErrorBody", &ErrorBody{}, `{"message":"not all extension_mandatory parameters are supported",
			"details":[{"parameter_name":"abc_route_type","error":"not supported"}]}`},
	} {
		dec := json.NewDecoder(bytes.NewReader([]byte(tc.json)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(tc.v); err != nil {
			t.Errorf("%s: decode: %v", tc.name, err)
			continue
		}
		b, err := json.Marshal(tc.v)
		if err != nil {
			t.Errorf("%s: encode: %v", tc.name, err)
			continue
		}
		var want, got any
		if err := json.Unmarshal([]byte(tc.json), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: encodes as %s, want %s", tc.name, b, tc.json)
		}
	}
}

// Optional fields left zero are left out, so a client writes the small
// bodies the standard shows.
func TestOptionalFieldsOmitted(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{KeyRequest{Number: 2, Size: 256}, `{"number":2,"size":256}`},
		{KeyRequest{}, `{}`},
		{KeyIDs{KeyIDs: []KeyIDEntry{{KeyID: "bc490419-7d60-487f-adc1-4ddcc177c139"}}}, `{"key_IDs":[{"key_ID":"bc490419-7d60-487f-adc1-4ddcc177c139"}]}`},
		{KeyContainer{Keys: []Key{{KeyID: "k", Key: []byte{1}}}}, `{"keys":[{"key_ID":"k","key":"AQ=="}]}`},
		{ErrorBody{Message: "m"}, `{"message":"m"}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%#v encodes as %s, %v; want %s", tc.v, b, err, tc.want)
		}
	}
}
