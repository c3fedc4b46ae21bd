//! How sqlx stores a [`Timestamp`]: as DATETIME(6) in UTC on MariaDB/MySQL
//! and timestamptz on PostgreSQL. (SQLite's text form is in `sqlite.rs`.)

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySql, MySqlTypeInfo, MySqlValueRef};
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::{Decode, Encode, Type};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::domain::Timestamp;

// MySQL: a DATETIME in UTC. (sqlx sends an OffsetDateTime as a TIMESTAMP,
// whose range ends in 2038: a later `updated_before` would match nothing.)
impl Type<MySql> for Timestamp {
    fn type_info() -> MySqlTypeInfo {
        <PrimitiveDateTime as Type<MySql>>::type_info()
    }
    fn compatible(ty: &MySqlTypeInfo) -> bool {
        <PrimitiveDateTime as Type<MySql>>::compatible(ty)
    }
}

impl Encode<'_, MySql> for Timestamp {
    fn encode_by_ref(&self, buf: &mut Vec<u8>) -> Result<IsNull, BoxDynError> {
        let utc = self.datetime();
        <PrimitiveDateTime as Encode<MySql>>::encode(
            PrimitiveDateTime::new(utc.date(), utc.time()),
            buf,
        )
    }
}

impl<'r> Decode<'r, MySql> for Timestamp {
    fn decode(value: MySqlValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp::from_datetime(
            <PrimitiveDateTime as Decode<MySql>>::decode(value)?.assume_utc(),
        ))
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode(self.datetime(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp::from_datetime(<OffsetDateTime as Decode<
            Postgres,
        >>::decode(value)?))
    }
}
