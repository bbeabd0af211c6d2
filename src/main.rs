use incidentd::app::Application;
use incidentd::config::{Command, Config};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, config) = Config::from_cli();
    let telemetry = incidentd::telemetry::init(config.log_format, &config.log);
    let result = run(command, config).await;
    telemetry.shutdown();
    result
}

async fn run(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    match command.unwrap_or(Command::Serve) {
        Command::ApiKey(command) => incidentd::app::api_key_command(&config, command).await,
        Command::Secrets(command) => incidentd::app::secrets_command(&config, command).await,
        Command::Seed { incidents, concurrency } => {
            let seeding = Config { database_max_connections: concurrency as u32, ..config.clone() };
            let store = incidentd::app::open_store(&seeding).await?;
            let service = incidentd::service::Service::new(store, config.service_settings()?)?;
            let seeded = incidentd::seed::seed(&service, incidents, concurrency).await?;
            tracing::info!(
                incidents = seeded.incidents,
                components = seeded.components,
                seconds = seeded.seconds,
                "seeded"
            );
            Ok(())
        }
        Command::Backup { file } => {
            let bytes = incidentd::store::transfer::backup(config.database_url.expose_secret(), &file).await?;
            tracing::info!(file = %file.display(), bytes, "backed up");
            eprintln!(
                "backed up to {} ({bytes} bytes); keep the secret key (INCIDENTD_SECRET_KEY or incidentd-secret.key) with it, apart",
                file.display()
            );
            Ok(())
        }
        Command::Export { output } => incidentd::app::export_command(&config, output.as_deref()).await,
        Command::Import { input } => incidentd::app::import_command(&config, input.as_deref()).await,
        Command::Openapi => {
            println!("{}", incidentd::api::rest::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Migrate => {
            incidentd::app::migrate(config.database_url.expose_secret(), 1).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let app = Application::build(&config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(incidentd::app::cancel_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await
        }
    }
}
