package kafka

import (
	"context"
	"fmt"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/sasl"
	awssasl "github.com/twmb/franz-go/pkg/sasl/aws"
)

// mskUserAgent is the user agent MSK sees in the signed payload.
const mskUserAgent = "envoy-pubsub"

// mskIAMMechanism signs AWS MSK IAM authentications with the AWS SDK's
// default credential chain; the SDK caches the credentials and renews
// temporary ones before they expire.
func mskIAMMechanism() (sasl.Mechanism, error) {
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		return nil, fmt.Errorf("kafka: sasl AWS_MSK_IAM: %w", err)
	}
	return awssasl.ManagedStreamingIAM(func(ctx context.Context) (awssasl.Auth, error) {
		creds, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return awssasl.Auth{}, fmt.Errorf("kafka: sasl AWS_MSK_IAM credentials: %w", err)
		}
		return awssasl.Auth{
			AccessKey:    creds.AccessKeyID,
			SecretKey:    creds.SecretAccessKey,
			SessionToken: creds.SessionToken,
			UserAgent:    mskUserAgent,
		}, nil
	}), nil
}
