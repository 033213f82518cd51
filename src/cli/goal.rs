//! `goalcast goal` and `goalcast segment`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output;
use crate::context::{ContextOptions, build_context};
use crate::engage;
use crate::error::{Error, Result};
use crate::goals;
use crate::predict::{self, BucketCuts, GoalDefinition, PredictOptions};
use crate::segments::{DEFAULT_SEGMENTS_DIR, SegmentCatalog};
use crate::warehouse::{RunLock, Warehouse};

#[derive(Debug, Subcommand)]
pub enum GoalCommand {
    /// Predict a goal and print the result without saving anything.
    Predict(GoalArgs),
    /// Predict a goal, freeze its target group and save the goal with its predictions.
    Create {
        #[command(flatten)]
        goal: GoalArgs,
        /// Maximum number of active goals in the warehouse.
        #[arg(long, env = "GOALCAST_MAX_ACTIVE_GOALS", default_value_t = crate::goals::DEFAULT_MAX_ACTIVE_GOALS)]
        max_active_goals: usize,
    },
    /// List the warehouse's goals.
    List {
        /// Output format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Show a goal's definition, prediction, model quality, buckets and curve.
    Show {
        /// The goal id, from `goalcast goal list`.
        goal_id: i64,
        /// Output format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Engage an intent bucket: hold out a control group and export the test audience.
    Engage {
        /// The goal id, from `goalcast goal list`.
        goal_id: i64,
        /// Users to engage: most, moderately or least (likely bucket), or all target users.
        #[arg(long)]
        bucket: String,
        /// Share of the engaged users held out as control, as a whole percentage from 1 to 50;
        /// default 5 (or the stored share when the bucket is already engaged).
        #[arg(long, value_name = "PERCENT")]
        control_percent: Option<u32>,
        /// Write the test audience to this file; a .parquet or .csv name selects the format.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Output format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Archive a goal so it stops counting against the active-goal limit.
    Archive {
        /// The goal id, from `goalcast goal list`.
        goal_id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum SegmentCommand {
    /// List the segments: the built-in all_users and the SQL files of the segments folder.
    List {
        /// Folder of segment SQL files.
        #[arg(long, default_value = DEFAULT_SEGMENTS_DIR)]
        segments_dir: PathBuf,
        /// Output format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Show a segment's size and a sample of its users.
    Show {
        /// The segment name.
        name: String,
        /// Evaluate the segment as of this time (YYYY-MM-DD or RFC 3339, UTC); default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Folder of segment SQL files.
        #[arg(long, default_value = DEFAULT_SEGMENTS_DIR)]
        segments_dir: PathBuf,
        /// Output format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
}

#[derive(Debug, Args)]
pub struct GoalArgs {
    /// Display name of the goal.
    #[arg(long)]
    pub name: String,
    /// Segment whose users form the target group (see `goalcast segment list`).
    #[arg(long, default_value = "all_users")]
    pub segment: String,
    /// Event that achieves the goal; repeat for several (any of them counts).
    #[arg(long = "event", required = true, value_name = "EVENT_NAME")]
    pub events: Vec<String>,
    /// SQL condition on event columns, e.g. "amount >= 20".
    #[arg(long)]
    pub filter: Option<String>,
    /// maximize (users should perform the events) or minimize (they should not).
    #[arg(long, default_value = "maximize")]
    pub direction: String,
    /// Last day of the goal, inclusive, as YYYY-MM-DD in --time-zone.
    #[arg(long)]
    pub end_date: String,
    /// Time zone of the end date and of --as-of dates, as an IANA name.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Start the goal as if at this past time (YYYY-MM-DD or RFC 3339); default now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Bucket cut points: tertiles, percentiles:UPPER,LOWER or probabilities:UPPER,LOWER.
    #[arg(long, default_value = "tertiles")]
    pub buckets: String,
    /// Minimum number of users who performed the events in the training windows.
    #[arg(long, default_value_t = 100)]
    pub min_positives: usize,
    /// Minimum number of users who did not perform the events in the training windows.
    #[arg(long, default_value_t = 100)]
    pub min_negatives: usize,
    /// Most training windows (one per cutoff, 30 days apart at most) used to fit the model.
    #[arg(long, default_value_t = 6)]
    pub max_windows: usize,
    /// Maximum number of training rows (users times windows). Above it, training uses a sample
    /// of users chosen by a hash of their id, the same in every window.
    #[arg(long, default_value_t = 200_000)]
    pub max_training_rows: usize,
    /// Folder of segment SQL files.
    #[arg(long, default_value = DEFAULT_SEGMENTS_DIR)]
    pub segments_dir: PathBuf,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
}

impl GoalArgs {
    /// Builds the goal definition, resolving the start time.
    pub fn definition(&self) -> Result<GoalDefinition> {
        let zone = crate::import::time::parse_time_zone(&self.time_zone)?;
        let end_date = parse_date(&self.end_date, "--end-date")?;
        let start_micros = match &self.as_of {
            None => chrono::Utc::now().timestamp_micros(),
            Some(text) => parse_instant(text, zone)?,
        };
        Ok(GoalDefinition {
            name: self.name.clone(),
            segment: self.segment.clone(),
            event_names: self.events.clone(),
            event_filter: self.filter.clone(),
            direction: self.direction.parse()?,
            end_date,
            time_zone: self.time_zone.clone(),
            start_micros,
        })
    }

    pub fn options(&self) -> Result<PredictOptions> {
        Ok(PredictOptions {
            min_positives: self.min_positives,
            min_negatives: self.min_negatives,
            buckets: self.buckets.parse::<BucketCuts>()?,
            max_cutoffs: self.max_windows,
            max_training_rows: self.max_training_rows.max(1),
            ..PredictOptions::default()
        })
    }
}

fn parse_date(text: &str, option: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Error::InvalidArgument(format!("invalid {option} {text:?}: use YYYY-MM-DD")))
}

/// Parses a date (midnight in `zone`) or an RFC 3339 time.
fn parse_instant(text: &str, zone: chrono_tz::Tz) -> Result<i64> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return predict::local_midnight_micros(date, zone);
    }
    crate::import::time::parse_time_text(text, &crate::import::time::TimeFormat::Auto, zone).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "invalid --as-of {text:?}: use YYYY-MM-DD or an RFC 3339 time such as 1997-09-30T00:00:00Z"
        ))
    })
}

pub async fn run(
    warehouse: &Warehouse,
    command: GoalCommand,
    context_options: &ContextOptions,
) -> Result<()> {
    match command {
        GoalCommand::Predict(args) => {
            let definition = args.definition()?;
            let prediction = run_prediction(warehouse, &args, &definition, context_options).await?;
            output::print_prediction(&definition, &prediction, None, &args.format)
        }
        GoalCommand::Create {
            goal: args,
            max_active_goals,
        } => {
            let definition = args.definition()?;
            let goals = goals::load_goals(warehouse, context_options).await?;
            goals::check_can_create(&goals, &definition.name, max_active_goals)?;
            let prediction = run_prediction(warehouse, &args, &definition, context_options).await?;
            let cuts = args.options()?.buckets;
            // Saving rewrites the goals table, so it takes the run lock and rereads the goals:
            // a nightly run or another create may have changed them during the prediction.
            let run_id = crate::nightly::new_run_id();
            let lock = RunLock::acquire(warehouse, &run_id, "goal create").await?;
            let saved = async {
                let goals = goals::load_goals(warehouse, context_options).await?;
                goals::check_can_create(&goals, &definition.name, max_active_goals)?;
                goals::save_goal(warehouse, goals, &definition, &prediction, cuts).await
            }
            .await;
            lock.release().await?;
            let record = saved?;
            tracing::info!(goal_id = record.goal_id, "saved the goal");
            output::print_prediction(&definition, &prediction, Some(&record), &args.format)
        }
        GoalCommand::List { format } => {
            let goals = goals::load_goals(warehouse, context_options).await?;
            output::print_goal_list(&goals, &format)
        }
        GoalCommand::Show { goal_id, format } => {
            let ctx = build_context(warehouse, context_options).await?;
            let details = goals::goal_details(&ctx, warehouse, context_options, goal_id).await?;
            output::print_goal_details(&details, &format)
        }
        GoalCommand::Engage {
            goal_id,
            bucket,
            control_percent,
            export,
            format,
        } => {
            let request = engage::EngageRequest {
                goal_id,
                bucket: bucket.parse()?,
                control_percent,
                export,
            };
            output::check_format(&format)?;
            let engagement = engage::engage(warehouse, context_options, &request).await?;
            output::print_engagement(&engagement, &format)
        }
        GoalCommand::Archive { goal_id } => {
            let goal = goals::archive_goal(warehouse, context_options, goal_id).await?;
            println!("Archived goal {} ({:?})", goal.goal_id, goal.name);
            Ok(())
        }
    }
}

async fn run_prediction(
    warehouse: &Warehouse,
    args: &GoalArgs,
    definition: &GoalDefinition,
    context_options: &ContextOptions,
) -> Result<predict::Prediction> {
    let options = args.options()?;
    let ctx = build_context(warehouse, context_options).await?;
    let catalog = SegmentCatalog::new(&args.segments_dir);
    let spinner = crate::progress::spinner(format!("predicting goal {:?}", definition.name));
    let prediction = predict::predict(&ctx, &catalog, definition, &options).await;
    spinner.finish_and_clear();
    prediction
}

pub async fn run_segment(
    warehouse: &Warehouse,
    command: SegmentCommand,
    context_options: &ContextOptions,
) -> Result<()> {
    match command {
        SegmentCommand::List {
            segments_dir,
            format,
        } => {
            let catalog = SegmentCatalog::new(&segments_dir);
            output::print_segment_list(&catalog, &format)
        }
        SegmentCommand::Show {
            name,
            as_of,
            segments_dir,
            format,
        } => {
            let catalog = SegmentCatalog::new(&segments_dir);
            let segment = catalog.load(&name)?;
            let as_of_micros = match &as_of {
                Some(text) => parse_instant(text, chrono_tz::UTC)?,
                None => chrono::Utc::now().timestamp_micros(),
            };
            let ctx = build_context(warehouse, context_options).await?;
            let users = segment.users(&ctx, as_of_micros).await?;
            ctx.register_table("segment_users", users.into_view())?;
            let size = crate::import::count(&ctx, "SELECT count(*) FROM segment_users").await?;
            let sample = ctx
                .sql("SELECT user_id FROM segment_users ORDER BY user_id LIMIT 10")
                .await?
                .collect()
                .await?;
            let sample: Vec<String> = goals::records::from_batches::<serde_json::Value>(&sample)?
                .into_iter()
                .filter_map(|row| row["user_id"].as_str().map(str::to_string))
                .collect();
            output::print_segment(&segment, as_of_micros, size, &sample, &format)
        }
    }
}
