//! One typed method per public RPC method. Params and results are the wire types of
//! `talis-api`; nothing is redefined here.

use crate::wire::*;
use crate::{Client, Result};

/// One async method per entry of the public method table, named after it.
macro_rules! client_methods {
    ($($(#[doc = $doc:literal])* $m:ident $f:ident $name:literal $access:ident $mode:ident ($p:ty) -> ($r:ty);)*) => {
        impl Client {
            $(
                $(#[doc = $doc])*
                pub async fn $f(&self, params: &$p) -> Result<$r> {
                    self.call::<talis_api::methods::public::$m>(params).await
                }
            )*
        }
    };
}
talis_api::public_methods!(client_methods);

impl Client {
    /// Every instance matching `filter`, following `next_cursor` across pages of the largest size.
    pub async fn instance_list_all(&self, filter: &InstanceList) -> Result<Vec<Instance>> {
        let mut params = filter.clone();
        params.limit = Some(1000);
        params.page = None;
        let mut rows = Vec::new();
        loop {
            let page = self.instance_list(&params).await?;
            rows.extend(page.rows);
            match page.pagination.next_cursor {
                Some(c) => params.cursor = Some(c),
                None => return Ok(rows),
            }
        }
    }

    /// Every project of the caller (all pages).
    pub async fn project_list_all(&self) -> Result<Vec<Project>> {
        let mut params = OwnerList {
            limit: Some(1000),
            ..Default::default()
        };
        let mut rows = Vec::new();
        loop {
            let page = self.project_list(&params).await?;
            rows.extend(page.rows);
            match page.pagination.next_cursor {
                Some(c) => params.cursor = Some(c),
                None => return Ok(rows),
            }
        }
    }
}
