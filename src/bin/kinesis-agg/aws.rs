//! The stream and the AWS connection `put` and `tail` use: credentials and
//! region found the way the AWS CLI finds them (environment, `--profile` or
//! `AWS_PROFILE` in `~/.aws/config` and `~/.aws/credentials`, SSO,
//! credential processes, container and instance roles), and an optional
//! endpoint for a local Kinesis API.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::Client;

use crate::Stop;

#[derive(clap::Args)]
pub(crate) struct AwsArgs {
    /// The stream's name.
    #[arg(long)]
    pub(crate) stream: String,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Where the Kinesis API is and whose credentials call it.
#[derive(clap::Args)]
pub(crate) struct Connection {
    /// The Kinesis API's URL, for a local one such as kinesalite
    /// (http://127.0.0.1:4567); AWS's own endpoint for the region when
    /// absent.
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// The region (else AWS_REGION, AWS_DEFAULT_REGION or the profile's).
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// The profile of ~/.aws/config and ~/.aws/credentials to use (else
    /// AWS_PROFILE, else "default").
    #[arg(long)]
    pub(crate) profile: Option<String>,
}

/// A Kinesis client as the arguments ask.
pub(crate) async fn client(args: &Connection) -> Result<Client, Stop> {
    Ok(Client::new(&config(args).await?))
}

/// The AWS configuration the arguments ask for: credentials, region and
/// endpoint.
pub(crate) async fn config(args: &Connection) -> Result<aws_config::SdkConfig, Stop> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = &args.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &args.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &args.endpoint {
        loader = loader.endpoint_url(e);
    }
    let conf = loader.load().await;
    if conf.region().is_none() {
        return Err(Stop::Input(
            "no region: pass --region, or set AWS_REGION or a profile's region as for the AWS CLI".to_owned(),
        ));
    }
    Ok(conf)
}
