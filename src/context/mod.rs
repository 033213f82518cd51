//! Builds every DataFusion `SessionContext` goalcast uses.
//!
//! All SQL runs in a context from [`build_context`]: it registers the warehouse's object store,
//! sets the memory pool, and registers every table by name. Replacing this one function is how
//! a distributed engine would take over without touching the SQL steps.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::warehouse::{Manifest, PartitionType, Warehouse};

mod distinct;
mod snapshot;

/// The default DataFusion memory pool size: 4 GiB. Operators that need more spill to disk.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 4 << 30;

/// Settings for [`build_context`].
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// Size of the memory pool shared by all queries of the context, in bytes.
    pub memory_limit_bytes: usize,
    /// Number of partitions DataFusion plans for; `None` uses the number of cores.
    pub target_partitions: Option<usize>,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            target_partitions: None,
        }
    }
}

/// Builds a session over `warehouse` with every table registered under its name.
pub async fn build_context(
    warehouse: &Warehouse,
    options: &ContextOptions,
) -> Result<SessionContext> {
    let ctx = empty_context(warehouse, options)?;
    refresh_tables(&ctx, warehouse).await?;
    Ok(ctx)
}

/// Registers every table of `warehouse` in `ctx` again, from its current manifest, so that
/// later queries see the commits made since the tables were registered.
pub async fn refresh_tables(ctx: &SessionContext, warehouse: &Warehouse) -> Result<()> {
    for table in warehouse.table_names().await? {
        let manifest = warehouse.require_manifest(&table).await?;
        register_table(ctx, warehouse, &manifest).await?;
    }
    Ok(())
}

/// Builds a session over `warehouse` with no tables registered.
pub fn empty_context(warehouse: &Warehouse, options: &ContextOptions) -> Result<SessionContext> {
    let caches = CacheManagerConfig::default()
        .with_list_files_cache(Some(Arc::new(snapshot::Snapshots::default())));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit_bytes)))
        .with_cache_manager(caches)
        .build_arc()?;
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        // Plain Utf8 columns keep every table's stored schema the same whether goalcast's own
        // encoder or a DataFusion query wrote it, which BI readers rely on.
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_str("datafusion.execution.time_zone", "UTC");
    if let Some(partitions) = options.target_partitions {
        config = config.with_target_partitions(partitions);
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.add_optimizer_rule(Arc::new(distinct::CountsBesideDistinct));
    // `sample_key(user_id)` lets an analyst reproduce the users a model was trained on.
    ctx.register_udf(crate::predict::sample::sample_key_udf());
    ctx.register_object_store(&warehouse.store_url(), warehouse.store().clone());
    Ok(ctx)
}

/// Registers the committed files of `manifest` as a table named after it.
///
/// Queries of the table read exactly those files, so a commit that lands meanwhile does not
/// change what they see.
///
/// A table without files is skipped, because its schema cannot be read from one.
pub async fn register_table(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    manifest: &Manifest,
) -> Result<()> {
    let Some(schema) = file_schema(warehouse, manifest).await? else {
        tracing::debug!(table = manifest.table, "skipping a table with no files");
        ctx.deregister_table(manifest.table.as_str())?;
        return Ok(());
    };
    let partition_columns = manifest
        .partition_columns
        .iter()
        .map(|column| {
            let data_type = match column.data_type {
                PartitionType::Date => DataType::Date32,
                PartitionType::Utf8 => DataType::Utf8,
                PartitionType::Int64 => DataType::Int64,
            };
            (column.name.clone(), data_type)
        })
        .collect();
    let listing_options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partition_columns);
    let url = ListingTableUrl::parse(warehouse.table_url(&manifest.table))?
        .with_table_ref(manifest.table.as_str().into());
    let config = ListingTableConfig::new(url)
        .with_listing_options(listing_options)
        .with_schema(schema);
    let table = ListingTable::try_new(config)?;
    ctx.deregister_table(manifest.table.as_str())?;
    // The table reads the files its manifest lists, never a listing of its folder, whose
    // contents change while a commit is applied.
    let listings = ctx
        .runtime_env()
        .cache_manager
        .get_list_files_cache()
        .expect("every context has the snapshot listing cache");
    let (key, files) = snapshot::listing(warehouse, manifest);
    listings.put(&key, files);
    ctx.register_table(manifest.table.as_str(), Arc::new(table))?;
    Ok(())
}

/// Reads the schema stored in the first file of a table, or `None` when it has no files.
///
/// Every write replaces whole partitions with files of one schema, so the first file speaks
/// for all of them.
async fn file_schema(warehouse: &Warehouse, manifest: &Manifest) -> Result<Option<SchemaRef>> {
    let Some(file) = manifest.files.first() else {
        return Ok(None);
    };
    let path = warehouse.path(&format!("{}/{}", manifest.table, file.path));
    let schema =
        crate::warehouse::read_parquet_schema(warehouse.store().as_ref(), &path, file.bytes)
            .await
            .map_err(|error| Error::CorruptManifest {
                path: format!("{}/_table.json", manifest.table),
                message: format!("cannot read {path}: {error}"),
            })?;
    Ok(Some(schema))
}
