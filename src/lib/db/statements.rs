//! Prepared-statement caching on a long-lived pooled connection, so hot paths pay one round
//! trip per statement instead of two (parse + execute).

use std::borrow::BorrowMut;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement, Transaction};

use super::PooledConnection;

/// The statement for `sql`, prepared on `client` the first time and taken from `cache` after.
fn prepare_cached(
    client: &mut impl GenericClient,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(st) = cache.get(sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(sql)?;
    cache.insert(sql, st.clone());
    Ok(st)
}

/// The statements one connection has prepared, by their SQL.
pub type StatementCache = HashMap<&'static str, Statement>;

/// What a [`Prepared`] runs its statements on: a pooled connection or a transaction.
pub trait StatementClient {
    type Client: GenericClient;
    fn client(&mut self) -> &mut Self::Client;
}

impl StatementClient for PooledConnection {
    type Client = postgres::Client;
    fn client(&mut self) -> &mut postgres::Client {
        self
    }
}

impl<'a> StatementClient for Transaction<'a> {
    type Client = Transaction<'a>;
    fn client(&mut self) -> &mut Transaction<'a> {
        self
    }
}

/// A client whose statements are prepared once per connection: the one query wrapper, as a
/// [`CachedConnection`] (a pooled connection a thread keeps) and as a [`Tx`] on it.
pub struct Prepared<C, M> {
    client: C,
    cache: M,
}

/// A pooled connection kept by one thread, with the statements it has prepared.
pub type CachedConnection = Prepared<PooledConnection, StatementCache>;

/// A transaction whose queries are prepared once per connection.
pub type Tx<'a> = Prepared<Transaction<'a>, &'a mut StatementCache>;

impl<C: StatementClient, M: BorrowMut<StatementCache>> Prepared<C, M> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        prepare_cached(self.client.client(), self.cache.borrow_mut(), sql)
    }

    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.client().query(&st, params)
    }

    pub fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.client().query_one(&st, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.client().query_opt(&st, params)
    }

    pub fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.client().execute(&st, params)
    }
}

impl CachedConnection {
    pub fn new(conn: PooledConnection) -> Self {
        Prepared {
            client: conn,
            cache: HashMap::new(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Plans each statement once, for any parameters. For the read model's few fixed-shape
    /// statements over five-table joins, PostgreSQL's default re-plans each execution with its
    /// values (a custom plan: ~3 ms of planning for 0.4 ms of work); the generic plan is the
    /// same index scan every time.
    pub fn plan_once(&mut self) -> Result<(), postgres::Error> {
        self.client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
    }

    pub fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        Ok(Prepared {
            client: self.client.transaction()?,
            cache: &mut self.cache,
        })
    }
}

impl Tx<'_> {
    pub fn commit(self) -> Result<(), postgres::Error> {
        self.client.commit()
    }

    pub fn rollback(self) -> Result<(), postgres::Error> {
        self.client.rollback()
    }
}
