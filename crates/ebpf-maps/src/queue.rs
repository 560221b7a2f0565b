//! Queues and stacks (`BPF_MAP_TYPE_QUEUE`, `BPF_MAP_TYPE_STACK`): keyless maps of at most
//! `max_entries` values, pushed and popped whole under a lock (the kernel takes a spinlock).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::{MapError, MapSpec, MapType, UpdateFlags};

#[derive(Debug)]
pub(crate) struct Queue {
    spec: MapSpec,
    /// Oldest first.
    items: Mutex<VecDeque<Vec<u8>>>,
}

impl Queue {
    pub(crate) fn new(spec: MapSpec) -> Result<Queue, MapError> {
        if spec.key_size != 0 {
            return Err(MapError::BadSpec {
                reason: format!(
                    "a {} has no keys (key size 0, not {})",
                    spec.map_type, spec.key_size
                ),
            });
        }
        if spec.value_size == 0 {
            return Err(MapError::BadSpec {
                reason: format!("a {}'s values cannot be empty", spec.map_type),
            });
        }
        Ok(Queue {
            spec,
            items: Mutex::new(VecDeque::new()),
        })
    }

    fn items(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_value(&self, len: usize) -> Result<(), MapError> {
        if len == self.spec.value_size as usize {
            Ok(())
        } else {
            Err(MapError::ValueSize {
                expected: self.spec.value_size as usize,
                got: len,
            })
        }
    }

    /// Pushes `value`; when full, `Exist` drops the oldest element, anything else fails.
    pub(crate) fn push(&self, value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        self.check_value(value.len())?;
        if flags == UpdateFlags::NoExist {
            return Err(MapError::InvalidFlags { flags: 1 });
        }
        let mut items = self.items();
        if items.len() >= self.spec.max_entries as usize {
            if flags != UpdateFlags::Exist {
                return Err(MapError::Full);
            }
            items.pop_front();
        }
        items.push_back(value.to_vec());
        Ok(())
    }

    /// Removes (or with `remove == false`, copies) the next element: the oldest for a queue,
    /// the newest for a stack.
    pub(crate) fn pop(&self, remove: bool) -> Result<Vec<u8>, MapError> {
        let mut items = self.items();
        let stack = self.spec.map_type == MapType::Stack;
        let item = match (stack, remove) {
            (false, true) => items.pop_front(),
            (true, true) => items.pop_back(),
            (false, false) => items.front().cloned(),
            (true, false) => items.back().cloned(),
        };
        item.ok_or(MapError::NotFound)
    }

    /// The elements in pop order.
    pub(crate) fn entries(&self) -> Vec<Vec<u8>> {
        let items = self.items();
        if self.spec.map_type == MapType::Stack {
            items.iter().rev().cloned().collect()
        } else {
            items.iter().cloned().collect()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items().len()
    }
}
