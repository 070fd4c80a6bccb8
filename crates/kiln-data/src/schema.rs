//! kiln's view of a table's columns, and the canonical Arrow types behind it.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kiln_core::ColumnType;
use serde::{Deserialize, Serialize};

/// One column: name, logical type, and whether it has nulls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub nullable: bool,
}

/// The columns of a table, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub columns: Vec<ColumnSchema>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The logical type of an Arrow type, before categorical detection
/// (strings become categorical after profiling). `None` if unsupported.
pub fn logical_type(dt: &DataType) -> Option<ColumnType> {
    Some(match dt {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Integer,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            ColumnType::Integer
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            ColumnType::Float
        }
        DataType::Boolean => ColumnType::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            ColumnType::String
        }
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => {
            ColumnType::Categorical
        }
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(..) => ColumnType::Timestamp,
        _ => return None,
    })
}

/// The one Arrow type kiln stores each logical type as in columnar copies.
pub fn canonical_type(dt: &DataType) -> Option<DataType> {
    Some(match logical_type(dt)? {
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::String | ColumnType::Categorical => DataType::Utf8,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => match dt {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            _ => DataType::Timestamp(TimeUnit::Microsecond, None),
        },
    })
}

/// A schema with every field turned to its canonical type; the first
/// unsupported field is returned as `Err((name, type))`.
pub fn canonical_schema(schema: &Schema) -> Result<SchemaRef, (String, DataType)> {
    let fields: Result<Vec<Field>, _> = schema
        .fields()
        .iter()
        .map(|f| match canonical_type(f.data_type()) {
            Some(dt) => Ok(Field::new(f.name(), dt, true)),
            None => Err((f.name().clone(), f.data_type().clone())),
        })
        .collect();
    Ok(Arc::new(Schema::new(fields?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_types_widen_to_canonical_ones() {
        assert_eq!(canonical_type(&DataType::Int16), Some(DataType::Int64));
        assert_eq!(canonical_type(&DataType::Float32), Some(DataType::Float64));
        assert_eq!(
            canonical_type(&DataType::Timestamp(TimeUnit::Second, None)),
            Some(DataType::Timestamp(TimeUnit::Microsecond, None))
        );
        assert_eq!(canonical_type(&DataType::Null), Some(DataType::Utf8));
        assert_eq!(canonical_type(&DataType::Binary), None);
    }
}
